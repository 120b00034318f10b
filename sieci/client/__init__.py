"""The client's side: the library (sieci.Client, sieci.Executor), the sieci-client command,
its batches, and the link to a master."""

"""The worker: its links to masters, one job at a time, and the job's run through its fork
server, from the files it gets to the results it sends back."""

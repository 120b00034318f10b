"""The master: its two ports, the queue and dispatch of jobs to workers, kept jobs, job
control and the dashboard."""

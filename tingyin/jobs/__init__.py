"""Background jobs on Celery, with the database as the truth about each job."""

from tingyin.jobs.service import (
    JobCancelled,
    JobContext,
    JobSweeper,
    JobView,
    cancel_job,
    delete_finished_job,
    get_job,
    input_key,
    job_handler,
    new_job_id,
    on_job_finished,
    submit_job,
)

__all__ = [
    "JobCancelled",
    "JobContext",
    "JobSweeper",
    "JobView",
    "cancel_job",
    "delete_finished_job",
    "get_job",
    "input_key",
    "job_handler",
    "new_job_id",
    "on_job_finished",
    "submit_job",
]

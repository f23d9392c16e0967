"""Telling workers that a job is waiting: nothing to do for the embedded workers, an RQ job with Redis.

The database's ``jobs`` table is the queue of record; Redis only carries the news. Embedded
workers find queued jobs by polling the table. With ``REDIS_URL`` set, each job is also put on
the RQ queue ``emofuse`` as a call of :func:`gateway.jobs.deliver` with its id, and ``emofuse
worker`` processes take it from there; the job runs only if the worker can claim its row, so a
job delivered twice still runs once::

    queue = JobQueue("redis://127.0.0.1:6379/0")
    queue.deliver(job_id=17, attempt=0)            # RQ job 'emofuse-17-0'

A delivery that fails (Redis down) is logged, not raised: the job is safe in the database, and
the workers' sweep delivers it again (:meth:`gateway.jobs.Runner.sweep`).
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["QUEUE_NAME", "JobQueue", "rq_job_id"]

log = logging.getLogger(__name__)

QUEUE_NAME = "emofuse"
DELIVER = "gateway.jobs.deliver"  # by name: RQ imports it in the worker, the gateway never imports the worker
_PENDING = ("queued", "started", "deferred", "scheduled")
_JOB_TIMEOUT_S = 24 * 3600  # the job's lease, not RQ's timer, tells a stuck job (see gateway.jobs)


def rq_job_id(job_id: int, attempt: int) -> str:
    """The RQ job of one attempt at a database job: a retry is a new RQ job, never a stale one."""
    return f"emofuse-{job_id}-{attempt}"


class JobQueue:
    """Where new jobs are announced: RQ on the Redis at ``redis_url``, or nowhere (embedded)."""

    def __init__(self, redis_url: str | None) -> None:
        self.redis_url = redis_url
        self._queue: Any = None

    @property
    def embedded(self) -> bool:
        return self.redis_url is None

    def rq_queue(self) -> Any:
        """The RQ queue, connected on first use (the ``rq`` and ``redis`` packages load only then)."""
        if self._queue is None:
            from redis import Redis
            from rq import Queue

            self._queue = Queue(QUEUE_NAME, connection=Redis.from_url(self.redis_url, socket_timeout=5, socket_connect_timeout=5))
        return self._queue

    def deliver(self, job_id: int, attempt: int) -> bool:
        """Announce attempt ``attempt`` of job ``job_id``; False if Redis could not take it (logged)."""
        if self.embedded:
            return True
        from redis.exceptions import RedisError

        try:
            self.rq_queue().enqueue_call(DELIVER, args=(job_id,), job_id=rq_job_id(job_id, attempt), timeout=_JOB_TIMEOUT_S,
                                         result_ttl=600, failure_ttl=24 * 3600)  # fmt: skip
        except RedisError as err:
            log.warning("job %s could not be put on the queue (%s); the workers' sweep will deliver it", job_id, err)
            return False
        return True

    def pending(self, job_id: int, attempt: int) -> bool:
        """Whether RQ already holds this attempt, waiting or running (so it need not be sent again)."""
        if self.embedded:
            return False
        from rq.exceptions import NoSuchJobError
        from rq.job import Job

        try:
            status = Job.fetch(rq_job_id(job_id, attempt), connection=self.rq_queue().connection).get_status()
        except NoSuchJobError:
            return False
        return str(getattr(status, "value", status)) in _PENDING

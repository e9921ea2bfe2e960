"""Run the converter worker: ``python -m converter``."""

from __future__ import annotations

import threading
from datetime import timedelta

from common.egress import EgressGuard
from common.jobs import JobStore
from common.logs import configure_logging
from common.messaging import Consumer, Publisher
from common.retry import retry_transient
from common.storage import Storage
from common.worker import StallWatch, run_worker
from converter.config import Config
from converter.handler import Converter
from converter.janitor import Janitor


def main() -> None:
    """Consume the video queue until SIGTERM, converting one video at a time."""
    config = Config.from_env()
    configure_logging("converter", config.logging)
    storage = Storage(config.mongo)
    jobs = JobStore(storage.client, config.mongo)
    retry_transient(jobs.ensure_indexes, "MongoDB", timeout=config.startup_timeout)
    publisher = Publisher(config.rabbit, name="converter")
    stopping = threading.Event()  # set on SIGTERM: ffmpeg stops and the job is requeued
    stall = StallWatch(config.stall_after)  # /health fails while a conversion is wedged
    converter = Converter(
        storage=storage,
        jobs=jobs,
        publisher=publisher,
        mp3_queue=config.mp3_queue,
        workdir=config.workdir,
        cancel=stopping,
        max_media_seconds=config.max_media_seconds,
        stall=stall,
        guard=EgressGuard(config.egress),
    )
    consumer = Consumer(
        config.rabbit,
        config.video_queue,
        converter.handle,
        name="converter",
        retry=config.retry,
        on_give_up=converter.give_up,
        stop_event=stopping,
    )
    janitor = Janitor(
        storage=storage,
        jobs=jobs,
        publisher=publisher,
        video_queue=config.video_queue,
        mp3_queue=config.mp3_queue,
        stale_after=timedelta(seconds=config.stale_after),
        abandoned_after=timedelta(seconds=config.abandoned_after),
        retention=timedelta(days=config.retention_days) if config.retention_days else None,
        max_attempts=config.retry.attempts,
        orphaned_video_after=timedelta(seconds=config.orphaned_video_after),
    )
    threading.Thread(
        target=janitor.run_forever,
        args=(stopping,),
        kwargs={"interval": config.janitor_interval},
        name="janitor",
        daemon=True,
    ).start()
    try:
        run_worker(
            [consumer],
            health_host=config.health_host,
            health_port=config.health_port,
            stall=stall,
        )
    finally:
        publisher.close()
        storage.close()


if __name__ == "__main__":
    main()

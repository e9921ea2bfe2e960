"""Local servers for development and tests on a machine without Docker.

Nothing here is imported by a service: ``make run`` and the test session use it
to start (or reuse) MariaDB, RabbitMQ, SecantusDB and an SMTP sink.
"""

"""Local servers and the local system, for development, tests and benchmarks without Docker.

Nothing here is imported by a service, and none of it is installed (pyproject's package
list leaves it out): ``make run``, the test session and the benchmarks use it from the
checkout to start (or reuse) MariaDB, RabbitMQ, a mongod and an SMTP sink, and build the
four services' environment, data and users in ``devstack.system``.
"""

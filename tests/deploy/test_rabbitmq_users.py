"""RabbitMQ's users: one per service with its own permissions, and a read-only monitor.

The broker loads its definitions at every start from what
deploy/rabbitmq/render-definitions.sh writes: deploy/rabbitmq/definitions.json with
the passwords taken from the environment. Here that script runs as the container
runs it; its output is imported into a throwaway vhost of the machine's RabbitMQ
(with rabbitmqctl, as root; the users renamed so that nothing clashes), and each
service's user declares, publishes and consumes the way its code does, through
the code's own publisher and dead-letter tools, and is refused what it does not
need. The vhost and the users are deleted afterwards.
"""

from __future__ import annotations

import json
import pwd
import re
import secrets
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pika
import pika.exceptions
import pytest
from pika.adapters.blocking_connection import BlockingChannel

from common.config import _PLACEHOLDER, RabbitConfig
from common.deadletters import DeadLetters
from common.messaging import Publisher, dead_letter_queue, declare, retry_queue
from tests.conftest import unavailable
from tests.deploy.files import (
    ENV_EXAMPLE,
    ROOT,
    compose_environment,
    compose_mounts,
    container_environment,
    filled_secret_templates,
    find,
    objects,
    pod_containers,
    render_compose,
    secret_templates,
)

RABBITMQ_DEPLOY = ROOT / "deploy" / "rabbitmq"
TEMPLATE = RABBITMQ_DEPLOY / "definitions.json"
RENDER = RABBITMQ_DEPLOY / "render-definitions.sh"
CONF = RABBITMQ_DEPLOY / "30-video2mp3.conf"
SERVICES = ("gateway", "converter", "notification")
ACCESS_REFUSED = 403
WORK_QUEUES = ("video", "mp3", "webhook")
# A delay queue of each work queue, as a consumer's retry ladder names them.
RETRY = {queue: retry_queue(queue, 1.0) for queue in WORK_QUEUES}
ALL_QUEUES = [
    name for queue in WORK_QUEUES for name in (queue, dead_letter_queue(queue), RETRY[queue])
]


def template_variables() -> list[str]:
    """Return the variables the definitions template takes its passwords from."""
    return sorted(set(re.findall(r"\$\{([A-Z0-9_]+)\}", TEMPLATE.read_text())))


def password_variable(user: str) -> str:
    """Return the variable the definitions take ``user``'s password from."""
    users = json.loads(TEMPLATE.read_text())["users"]
    (placeholder,) = [entry["password"] for entry in users if entry["name"] == user]
    return placeholder.strip("${}")


def render(environ: dict[str, str], target: Path) -> subprocess.CompletedProcess[str]:
    """Run render-definitions.sh as the container does, with only ``environ`` set."""
    return subprocess.run(
        ["sh", str(RENDER)],
        env={"PATH": "/usr/bin:/bin", "DEFINITIONS_FILE": str(target), **environ},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def real_passwords() -> dict[str, str]:
    """Return a fresh password for every variable of the template."""
    return {name: secrets.token_urlsafe(18) for name in template_variables()}


# -------------------------------------------------------------- the render script
def test_render_fills_in_every_password_and_keeps_the_permissions(tmp_path):
    passwords = real_passwords()
    target = tmp_path / "run" / "definitions.json"

    result = render(passwords, target)

    assert result.returncode == 0, result.stderr
    rendered = json.loads(target.read_text())
    template = json.loads(TEMPLATE.read_text())
    users = {user["name"]: user["password"] for user in rendered["users"]}
    assert users == {name: passwords[password_variable(name)] for name in users}
    assert set(users) == {*SERVICES, "admin", "monitor"}
    assert rendered["permissions"] == template["permissions"]
    assert target.stat().st_mode & 0o077 == 0, "only the broker may read its passwords"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "is not set"),
        ("", "is not set"),
        ("changeme", "is still a placeholder"),
        ("CHANGE_ME_NOW", "is still a placeholder"),
        ("guest", "is still a placeholder"),
        ('pass"word', "may hold only letters, digits"),
        ("pass|word", "may hold only letters, digits"),
        ("pass word", "may hold only letters, digits"),
    ],
)
def test_render_refuses_a_missing_placeholder_or_unsafe_password(tmp_path, value, message):
    passwords = real_passwords()
    if value is None:
        del passwords["RABBITMQ_GATEWAY_PASSWORD"]
    else:
        passwords["RABBITMQ_GATEWAY_PASSWORD"] = value
    target = tmp_path / "definitions.json"

    result = render(passwords, target)

    assert result.returncode != 0
    assert f"RABBITMQ_GATEWAY_PASSWORD {message}" in result.stderr
    assert not target.exists(), "nothing is written when a password is refused"


def test_render_refuses_what_the_services_refuse():
    script = RENDER.read_text()
    (pattern,) = re.findall(r"^placeholder='(.*)'$", script, re.MULTILINE)
    assert pattern == _PLACEHOLDER.pattern


def test_render_then_starts_the_command_it_is_given(tmp_path):
    result = subprocess.run(
        ["sh", str(RENDER), "sh", "-c", 'echo "started with $1"', "sh", "rabbitmq-server"],
        env={
            "PATH": "/usr/bin:/bin",
            "DEFINITIONS_FILE": str(tmp_path / "definitions.json"),
            **real_passwords(),
        },
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (result.returncode, result.stdout) == (0, "started with rabbitmq-server\n")


# ---------------------------------------------------------------- a live broker
@dataclass
class Broker:
    """The machine's RabbitMQ with the definitions imported into a vhost of their own."""

    host: str
    port: int
    vhost: str
    logins: dict[str, tuple[str, str]]  # user in the definitions -> (user here, password)

    def url(self, user: str) -> str:
        """Return the AMQP URL that logs ``user`` in to the test vhost."""
        name, password = self.logins[user]
        return f"amqp://{name}:{password}@{self.host}:{self.port}/{quote(self.vhost, safe='')}"

    def config(self, user: str) -> RabbitConfig:
        """Return the broker configuration a service running as ``user`` would have."""
        return RabbitConfig(url=self.url(user), delivery_limit=5)

    def connect(self, user: str) -> pika.BlockingConnection:
        """Open a connection as ``user``."""
        return pika.BlockingConnection(pika.URLParameters(self.url(user)))


def rabbitmqctl(*args: str) -> subprocess.CompletedProcess[str]:
    """Run rabbitmqctl against the machine's node."""
    return subprocess.run(
        ["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60, check=False
    )


def import_definitions(definitions: dict[str, Any]) -> None:
    """Import ``definitions`` with rabbitmqctl, from a file only the broker's user can read."""
    # Run as root, Debian's rabbitmqctl switches to the rabbitmq user, which must read the file.
    owner = "rabbitmq" if _user_exists("rabbitmq") else None
    with tempfile.TemporaryDirectory(prefix="v2m-definitions-") as folder:
        path = Path(folder) / "definitions.json"
        path.write_text(json.dumps(definitions))
        path.chmod(0o600)
        if owner:
            shutil.chown(folder, owner)
            shutil.chown(path, owner)
        result = rabbitmqctl("import_definitions", str(path))
    assert result.returncode == 0, result.stderr


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def renamed(definitions: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Move the definitions into vhost ``prefix`` and give their users names under it."""
    assert set(definitions) == {"vhosts", "users", "permissions"}, "rename the new kinds too"
    return {
        "vhosts": [{"name": prefix}],
        "users": [{**user, "name": f"{prefix}-{user['name']}"} for user in definitions["users"]],
        "permissions": [
            {**permission, "user": f"{prefix}-{permission['user']}", "vhost": prefix}
            for permission in definitions["permissions"]
        ],
    }


@pytest.fixture(scope="module")
def broker(rabbitmq_config: RabbitConfig, tmp_path_factory) -> Iterator[Broker]:
    """Import the rendered definitions into a throwaway vhost; delete it and its users after."""
    if shutil.which("rabbitmqctl") is None or rabbitmqctl("list_vhosts").returncode != 0:
        unavailable("rabbitmqctl cannot manage the local RabbitMQ (it needs root here)")
    rendered = tmp_path_factory.mktemp("rabbitmq") / "definitions.json"
    result = render(real_passwords(), rendered)
    assert result.returncode == 0, result.stderr
    prefix = f"v2m-test-{uuid.uuid4().hex[:10]}"
    definitions = renamed(json.loads(rendered.read_text()), prefix)
    rendered.unlink()
    url = urlsplit(rabbitmq_config.url)
    logins = {
        user["name"].removeprefix(f"{prefix}-"): (user["name"], user["password"])
        for user in definitions["users"]
    }
    found = Broker(url.hostname or "127.0.0.1", url.port or 5672, prefix, logins)
    try:
        import_definitions(definitions)
        _wait_until_every_user_logs_in(found)
        yield found
    finally:
        rabbitmqctl("delete_vhost", prefix)
        for name, _ in logins.values():
            rabbitmqctl("delete_user", name)


def _wait_until_every_user_logs_in(broker: Broker, timeout: float = 15.0) -> None:
    """Wait for the import, which rabbitmqctl only starts, to have created every user."""
    deadline = time.monotonic() + timeout
    for user in broker.logins:
        while True:
            try:
                broker.connect(user).close()
                break
            except pika.exceptions.AMQPConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


@pytest.fixture
def fresh(broker: Broker) -> Broker:
    """Delete every queue of the test vhost first: each test creates the queues it uses."""
    connection = broker.connect("admin")
    try:
        channel = connection.channel()
        for name in ALL_QUEUES:
            channel.queue_delete(name)
    finally:
        connection.close()
    return broker


Action = Callable[[BlockingChannel], object]


def permitted(connection: pika.BlockingConnection, action: Action) -> bool:
    """Run ``action`` on a channel of its own; tell whether the broker allowed it."""
    channel = connection.channel()
    try:
        action(channel)
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code != ACCESS_REFUSED:
            raise
        return False
    if channel.is_open:
        channel.close()
    return True


def declare_queue(queue: str) -> Action:
    """Declare ``queue`` as the services do: a work queue and its dead letters, or a delay queue."""
    return lambda channel: declare(channel, queue, delivery_limit=5)


def publish(queue: str, exchange: str = "") -> Action:
    """Publish one message with confirms, to ``queue`` through the default exchange."""

    def action(channel: BlockingChannel) -> None:
        channel.confirm_delivery()
        channel.basic_publish(exchange, queue, b"{}")

    return action


def get(queue: str) -> Action:
    """Take a message off ``queue`` and hand it back, as a consumer or a dead-letter listing."""

    def action(channel: BlockingChannel) -> None:
        method, _, _ = channel.basic_get(queue, auto_ack=False)
        if method is not None:
            channel.basic_nack(method.delivery_tag, requeue=True)

    return action


def passive(queue: str) -> Action:
    """Ask for a queue's depth, as KEDA over AMQP or a consumer's depth gauge does."""
    return lambda channel: channel.queue_declare(queue, passive=True)


def delete(queue: str) -> Action:
    """Delete ``queue``."""
    return lambda channel: channel.queue_delete(queue)


def declare_exchange(channel: BlockingChannel) -> None:
    """Declare an exchange of one's own."""
    channel.exchange_declare("video2mp3-test", "topic")


def set_up_as_admin(
    broker: Broker, queues: list[str], messages_in: list[str] | None = None
) -> None:
    """Create ``queues`` (as their users would) and put a message in each of ``messages_in``."""
    connection = broker.connect("admin")
    try:
        channel = connection.channel()
        for queue in queues:
            declare(channel, queue, delivery_limit=5)
        for queue in messages_in or []:
            properties = pika.BasicProperties(message_id=f"in-{queue}", delivery_mode=2)
            channel.basic_publish("", queue, b'{"job_id": "j1"}', properties)
    finally:
        connection.close()


def publish_as(broker: Broker, user: str, queue: str) -> None:
    """Publish a message to ``queue`` with the services' own publisher, logged in as ``user``."""
    publisher = Publisher(broker.config(user), name=user)
    try:
        publisher.publish(queue, {"job_id": "j1"})
    finally:
        publisher.close()


def refusals(broker: Broker, user: str, actions: list[Action]) -> list[bool]:
    """Tell for each action whether the broker refused it to ``user``."""
    connection = broker.connect(user)
    try:
        return [not permitted(connection, action) for action in actions]
    finally:
        connection.close()


def test_gateway_publishes_video_jobs_and_works_every_dead_letter_queue(fresh):
    # The first upload creates the video queue and its dead-letter queue.
    publish_as(fresh, "gateway", "video")
    # The admin API lists, replays and discards the dead letters of every work queue.
    set_up_as_admin(fresh, ["mp3", "webhook"], [dead_letter_queue(q) for q in WORK_QUEUES])
    dead_letters = DeadLetters(fresh.config("gateway"), name="gateway")
    assert [dead_letters.count(queue) for queue in WORK_QUEUES] == [1, 1, 1]
    listing = dead_letters.list("video")
    assert [message.message_id for message in listing.messages] == ["in-video.dead"]
    assert dead_letters.replay_all("mp3").count == 1
    assert dead_letters.discard_all("webhook").count == 1

    refused = [
        declare_queue("mp3"),
        declare_queue(RETRY["video"]),
        get("mp3"),
        get("webhook"),
        delete("mp3"),
        delete(dead_letter_queue("mp3")),
        declare_exchange,
        publish("video", exchange="amq.topic"),
    ]
    assert refusals(fresh, "gateway", refused) == [True] * len(refused)


def test_converter_consumes_video_retries_it_and_publishes_mp3(fresh):
    # Its consumer declares the video queue and its delay queues, and takes messages.
    allowed = [
        declare_queue("video"),
        declare_queue(RETRY["video"]),
        get("video"),
        passive("video"),
        publish(RETRY["video"]),  # a retry waits in a delay queue
        publish("video"),  # the janitor requeues a stalled job
    ]
    assert refusals(fresh, "converter", allowed) == [False] * len(allowed)
    # Its results create the mp3 queue and its dead-letter queue.
    publish_as(fresh, "converter", "mp3")

    set_up_as_admin(fresh, ["webhook", RETRY["mp3"]])
    refused = [
        get(dead_letter_queue("video")),
        declare_queue("webhook"),
        get("webhook"),
        delete("webhook"),
        declare_queue(RETRY["mp3"]),
        get(RETRY["mp3"]),
        declare_exchange,
    ]
    assert refusals(fresh, "converter", refused) == [True] * len(refused)


def test_notification_consumes_mp3_and_webhook_and_schedules_their_retries(fresh):
    # Its consumers declare both work queues, with their delay queues, and take messages.
    allowed = [
        declare_queue("mp3"),
        declare_queue("webhook"),
        declare_queue(RETRY["mp3"]),
        declare_queue(RETRY["webhook"]),
        get("mp3"),
        get("webhook"),
    ]
    assert refusals(fresh, "notification", allowed) == [False] * len(allowed)
    # A finished job's webhook goes to its own queue; failed deliveries wait to be retried.
    for queue in ("webhook", RETRY["mp3"], RETRY["webhook"]):
        publish_as(fresh, "notification", queue)

    set_up_as_admin(fresh, ["video"])
    refused = [
        declare_queue("video"),
        get("video"),
        delete("video"),
        get(dead_letter_queue("mp3")),
        get(dead_letter_queue("webhook")),
        declare_queue(RETRY["video"]),
        declare_exchange,
    ]
    assert refusals(fresh, "notification", refused) == [True] * len(refused)


def test_the_monitor_sees_queue_depths_and_nothing_else(fresh):
    set_up_as_admin(fresh, ["video"], ["video"])
    assert refusals(fresh, "monitor", [passive("video")]) == [False]
    refused = [get("video"), publish("video"), declare_queue("video"), delete("video")]
    refused.append(declare_exchange)
    assert refusals(fresh, "monitor", refused) == [True] * len(refused)


# ------------------------------------------------------------- the deployments
def k8s_environment(kind: str, name: str, secrets: dict[str, dict[str, str]]) -> dict[str, str]:
    """Return the environment of a workload's one container, Secrets from ``secrets``."""
    docs = objects()
    (container,) = pod_containers(find(kind, name, docs))
    return container_environment(container, docs, secrets)


def assert_each_service_logs_in_as_itself(broker: dict[str, str], services: dict[str, dict]):
    """Check each service's RabbitMQ login is the user the broker makes with that password."""
    for user in SERVICES:
        assert services[user]["RABBITMQ_USER"] == user
        assert services[user]["RABBITMQ_PASSWORD"] == broker[password_variable(user)]


def test_compose_gives_each_service_its_own_broker_login(docker_compose, filled_env_file, tmp_path):
    services = render_compose(filled_env_file)["services"]
    broker = compose_environment(services["rabbitmq"])

    assert_each_service_logs_in_as_itself(
        broker, {user: compose_environment(services[user]) for user in SERVICES}
    )
    rabbitmq = services["rabbitmq"]
    assert rabbitmq["entrypoint"] == ["sh", "/etc/video2mp3/render-definitions.sh"]
    assert rabbitmq["command"] == ["docker-entrypoint.sh", "rabbitmq-server"]
    mounts = compose_mounts(rabbitmq)
    assert mounts["/etc/video2mp3"] == str(RABBITMQ_DEPLOY)
    assert mounts["/etc/rabbitmq/conf.d/30-video2mp3.conf"] == str(CONF)
    assert rabbitmq["tmpfs"] == ["/run/video2mp3"]
    assert render(broker, tmp_path / "definitions.json").returncode == 0


def test_compose_with_the_example_env_stops_the_broker(docker_compose, tmp_path):
    broker = compose_environment(render_compose(ENV_EXAMPLE)["services"]["rabbitmq"])

    result = render(broker, tmp_path / "definitions.json")

    assert result.returncode != 0
    assert "is still a placeholder" in result.stderr


def test_the_broker_loads_what_the_script_writes():
    (target,) = re.findall(r"DEFINITIONS_FILE:-([^}]+)}", RENDER.read_text())
    assert f"definitions.local.path = {target}" in CONF.read_text().splitlines()
    assert "definitions.import_backend = local_filesystem" in CONF.read_text().splitlines()


def test_k8s_gives_each_service_its_own_broker_login(tmp_path):
    filled = filled_secret_templates()
    broker = k8s_environment("StatefulSet", "rabbitmq", filled)

    assert set(broker) == set(template_variables())
    assert_each_service_logs_in_as_itself(
        broker, {user: k8s_environment("Deployment", user, filled) for user in SERVICES}
    )
    assert render(broker, tmp_path / "definitions.json").returncode == 0
    placeholders = k8s_environment("StatefulSet", "rabbitmq", secret_templates())
    assert render(placeholders, tmp_path / "refused.json").returncode != 0


def test_k8s_runs_the_same_start_as_compose():
    data = find("ConfigMap", "rabbitmq")["data"]
    for path in (TEMPLATE, RENDER, CONF):
        assert data[path.name] == path.read_text(), f"k8s/rabbitmq/configmap.yaml: {path.name}"
    pod = find("StatefulSet", "rabbitmq")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["sh", "/etc/video2mp3/render-definitions.sh"]
    assert container["args"] == ["docker-entrypoint.sh", "rabbitmq-server"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert volumes[mounts["/etc/video2mp3"]["name"]]["configMap"]["name"] == "rabbitmq"
    for conf in ("30-video2mp3.conf", "40-management-tls.conf"):
        assert mounts[f"/etc/rabbitmq/conf.d/{conf}"]["subPath"] == conf
    rendered = volumes[mounts["/run/video2mp3"]["name"]]["emptyDir"]
    assert rendered["medium"] == "Memory", "the rendered passwords stay off every disk"


def test_keda_reads_queue_depths_over_https_as_the_read_only_monitor():
    definitions = json.loads(TEMPLATE.read_text())
    (monitor,) = [user for user in definitions["users"] if user["name"] == "monitor"]
    (rights,) = [p for p in definitions["permissions"] if p["user"] == "monitor"]
    assert monitor["tags"] == ["management"]  # the HTTP API, no administration
    assert (rights["configure"], rights["write"], rights["read"]) == ("^$", "^$", "^$")

    filled = filled_secret_templates()
    auth = find("TriggerAuthentication", "converter-rabbitmq")["spec"]["secretTargetRef"]
    keda = {ref["parameter"]: filled[ref["name"]][ref["key"]] for ref in auth}
    broker = k8s_environment("StatefulSet", "rabbitmq", filled)
    assert keda["username"] == "monitor"
    assert keda["password"] == broker[password_variable("monitor")]
    host = urlsplit(keda["host"])
    assert (host.scheme, host.hostname) == ("https", "rabbitmq.video2mp3.svc.cluster.local")
    (port,) = [p for p in find("Service", "rabbitmq")["spec"]["ports"] if p["port"] == host.port]
    assert port["name"] == "management-tls"

    tls = dict(
        line.split(" = ")
        for line in find("ConfigMap", "rabbitmq")["data"]["40-management-tls.conf"].splitlines()
        if line and not line.startswith("#")
    )
    assert tls["management.ssl.port"] == str(host.port)
    assert not any(key.startswith("management.tcp") for key in tls), "no plain HTTP listener"
    pod = find("StatefulSet", "rabbitmq")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/etc/rabbitmq/tls"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume["secret"]["secretName"] == "rabbitmq-tls"
    for setting in ("cacertfile", "certfile", "keyfile"):
        assert tls[f"management.ssl.{setting}"].startswith("/etc/rabbitmq/tls/")
    assert tls["management.ssl.cacertfile"].endswith("/ca.crt")
    assert any(r["name"] == "rabbitmq-tls" and r["key"] == "ca.crt" for r in auth)

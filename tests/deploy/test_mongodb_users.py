"""MongoDB's users: one per service, each allowed exactly what its service's code does.

The mongo image runs deploy/mongodb/10-video2mp3-users.js once, as root, on an empty
data directory; it creates the roles and users of video2mp3-users.json. No mongosh
runs here, so the script runs under Node with a recording stand-in for mongosh's
``db`` (mongosh_stub.js), and the calls it makes are sent, as the server commands
mongosh's helpers send, to a genuine mongod started with ``--auth``. Then each
service's user runs the storage and job-record operations its code uses, through
the code's own ``Storage``, ``JobStore`` and the notification's ``DeliveryLedger``, and
is refused the ones it does not.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import unquote

import pymongo
import pymongo.errors
import pytest
from bson import ObjectId

from common.accounts import COLLECTION as ACCOUNT_DELETIONS
from common.accounts import AccountDeletions, erase
from common.audit import COLLECTION as AUDIT
from common.audit import AuditLog
from common.config import _PLACEHOLDER, MongoConfig
from common.jobs import JobStore
from common.mongo import utcnow
from common.storage import Storage
from devstack import servers
from gateway.intake import Submission
from gateway.quotas import OVERRIDES_COLLECTION, QuotaOverrides
from gateway.resumable import COLLECTION as TUS_COLLECTION
from gateway.resumable import ResumableUploads
from notification.ledger import EMAIL, WEBHOOK, DeliveryLedger
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

MONGO_DEPLOY = ROOT / "deploy" / "mongodb"
INIT_SCRIPT = MONGO_DEPLOY / "10-video2mp3-users.js"
DEFINITIONS_FILE = MONGO_DEPLOY / "video2mp3-users.json"
DEFINITIONS = json.loads(DEFINITIONS_FILE.read_text())
STUB = ROOT / "tests" / "deploy" / "mongosh_stub.js"
UNAUTHORIZED = 13
MP4_HEAD = b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41"
SERVICES = ("gateway", "converter", "notification")


def uri_variable(user: str) -> str:
    """Return the variable the init script reads ``user``'s MONGO_URI from."""
    (found,) = [u["uriVariable"] for u in DEFINITIONS["users"] if u["user"] == user]
    return found


def service_uris(host: str = "mongodb:27017", passwords: dict[str, str] | None = None):
    """Return each service's MONGO_URI, by the variable the init script reads it from."""
    passwords = passwords or {user: f"{user}-Pw7q" for user in SERVICES}
    return {
        uri_variable(user): f"mongodb://{user}:{passwords[user]}@{host}/?authSource=admin"
        for user in SERVICES
    }


@pytest.fixture(scope="session")
def node() -> str:
    """Return Node, which runs the mongosh script with a stand-in for the server."""
    path = shutil.which("node")
    if path is None:
        unavailable("node is not installed (it runs the MongoDB init script's tests)")
    return path


NOTHING = {"roles": [], "users": []}


def run_init(node: str, environ: dict[str, str], existing: dict[str, list[str]] = NOTHING):
    """Run the init script; return the finished process (its stdout: the calls made)."""
    return subprocess.run(
        [node, str(STUB), str(INIT_SCRIPT), str(DEFINITIONS_FILE)],
        env={"PATH": "/usr/bin:/bin", **environ, "EXISTING": json.dumps(existing)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def init_calls(node: str, environ: dict[str, str], existing=NOTHING) -> list[list[Any]]:
    """Return the mongosh calls the init script makes, which must succeed."""
    result = run_init(node, environ, existing)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# ----------------------------------------------------------- the init script
def test_the_definitions_grant_only_the_pipelines_collections():
    config = MongoConfig()
    collections = {
        config.videos_db: {
            "fs.files",
            "fs.chunks",
            "jobs",
            TUS_COLLECTION,
            ACCOUNT_DELETIONS,
            AUDIT,
            OVERRIDES_COLLECTION,
        },
        config.mp3s_db: {"fs.files", "fs.chunks"},
    }
    roles = {role["role"] for role in DEFINITIONS["roles"]}
    assert {role for user in DEFINITIONS["users"] for role in user["roles"]} == roles
    assert {user["user"] for user in DEFINITIONS["users"]} == set(SERVICES)
    for role in DEFINITIONS["roles"]:
        for privilege in role["privileges"]:
            resource = privilege["resource"]
            assert resource["collection"] in collections[resource["db"]], role["role"]
            assert privilege["actions"] == sorted(set(privilege["actions"]))


def test_the_init_script_creates_each_role_and_each_user_with_its_own_password(node):
    passwords = {"gateway": "g%40te-1", "converter": "c0nv", "notification": "n0tif"}

    calls = init_calls(node, service_uris(passwords=passwords))

    expected = [
        ["createRole", {"role": role["role"], "privileges": role["privileges"], "roles": []}]
        for role in DEFINITIONS["roles"]
    ]
    for user in DEFINITIONS["users"]:
        roles = [{"role": role, "db": "admin"} for role in user["roles"]]
        password = unquote(passwords[user["user"]])  # as the service's driver reads its URI
        expected.append(["createUser", {"user": user["user"], "pwd": password, "roles": roles}])
    assert calls == expected


def test_the_init_script_updates_what_exists_so_it_also_rotates_passwords(node):
    existing = {"roles": [r["role"] for r in DEFINITIONS["roles"]], "users": list(SERVICES)}

    calls = init_calls(node, service_uris(), existing)

    assert [(call[0], call[1]) for call in calls] == [
        *(("updateRole", role) for role in existing["roles"]),
        *(("updateUser", user) for user in SERVICES),
    ]
    assert calls[-1][2]["pwd"] == "notification-Pw7q"


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        (None, "NOTIFICATION_MONGO_URI is not set"),
        ("mongodb://mongodb:27017/", "NOTIFICATION_MONGO_URI carries no user and password"),
        ("mongodb://gateway:Real-pw9@mongodb/", 'logs in as "gateway", not as notification'),
        ("mongodb://notification:changeme@mongodb/", "missing or placeholder password"),
        ("mongodb://notification:change%6De@mongodb/", "missing or placeholder password"),
        ("mongodb://notification:@mongodb/", "missing or placeholder password"),
    ],
    ids=["unset", "no-credentials", "other-user", "placeholder", "encoded-placeholder", "empty"],
)
def test_the_init_script_refuses_before_it_changes_anything(node, uri, message):
    environ = service_uris()
    if uri is None:
        del environ["NOTIFICATION_MONGO_URI"]
    else:
        environ["NOTIFICATION_MONGO_URI"] = uri

    result = run_init(node, environ)

    assert result.returncode != 0
    assert message in result.stderr
    assert result.stdout == "", "nothing is created when a password is refused"
    assert "gateway-Pw7q" not in result.stderr


def test_the_init_script_refuses_what_the_services_refuse():
    (pattern,) = re.findall(r"^const PLACEHOLDER = /(.*)/i;$", INIT_SCRIPT.read_text(), re.M)
    assert pattern == _PLACEHOLDER.pattern


# --------------------------------------------------- a mongod that requires logins
def send(admin: pymongo.database.Database, call: list[Any]) -> None:
    """Send one mongosh user-management call as the server command its helper sends."""
    method, *args = call
    if method in ("createRole", "createUser"):
        (document,) = args
        name = document["role"] if method == "createRole" else document["user"]
        fields = {key: value for key, value in document.items() if key not in ("role", "user")}
        admin.command(method, name, **fields)
    else:
        name, update = args
        admin.command(method, name, **update)


@dataclass
class SecuredMongo:
    """A mongod with access control and the init script's users in it."""

    server: servers.MongoServer
    root: pymongo.MongoClient
    passwords: dict[str, str]

    def config(self, user: str, password: str | None = None) -> MongoConfig:
        """Return the MongoDB configuration a service logged in as ``user`` would have."""
        password = password or self.passwords[user]
        uri = f"mongodb://{user}:{password}@{self.server.host}:{self.server.port}/?authSource=admin"
        return MongoConfig(uri=uri, timeout_ms=3000)

    def existing(self) -> dict[str, list[str]]:
        """Return the roles and users the server has, for the init script's look-ups."""
        admin = self.root.admin
        return {
            "roles": [role["role"] for role in admin.command("rolesInfo", 1)["roles"]],
            "users": [user["user"] for user in admin.command("usersInfo", 1)["users"]],
        }

    def apply_init_script(self, node: str, passwords: dict[str, str]) -> None:
        """Run the init script against this server's state and send the calls it makes."""
        for call in init_calls(node, service_uris(passwords=passwords), self.existing()):
            send(self.root.admin, call)
        self.passwords = dict(passwords)


@pytest.fixture(scope="module")
def secured(node) -> Iterator[SecuredMongo]:
    """Start a mongod with --auth, make its root user, then apply the init script."""
    server = servers.MongoServer(auth=True)
    try:
        server.start()
    except servers.ServerUnavailable as exc:
        unavailable(str(exc))
    try:
        with pymongo.MongoClient(server.uri, serverSelectionTimeoutMS=5000) as first:
            # The localhost exception: the first user may be made without logging in.
            first.admin.command("createUser", "root", pwd="root-Pw9", roles=["root"])
        root = pymongo.MongoClient(server.uri, username="root", password="root-Pw9")
        found = SecuredMongo(server, root, {})
        found.apply_init_script(node, {user: f"{user}-Pw{n}" for n, user in enumerate(SERVICES)})
        yield found
        root.close()
    finally:
        server.stop()


@pytest.fixture
def as_service(secured: SecuredMongo) -> Iterator[Any]:
    """Open ``Storage`` and ``JobStore`` logged in as a service's user; close them after."""
    opened: list[Storage] = []

    def login(user: str) -> tuple[Storage, JobStore]:
        storage = Storage(secured.config(user))
        opened.append(storage)
        return storage, JobStore(storage.client, storage.config)

    yield login
    for storage in opened:
        storage.close()
    for database in (MongoConfig().videos_db, MongoConfig().mp3s_db):
        secured.root.drop_database(database)


def test_each_service_does_its_part_of_a_job(secured, as_service):
    gateway, gateway_jobs = as_service("gateway")
    converter, converter_jobs = as_service("converter")
    notification, notification_jobs = as_service("notification")
    ledger = DeliveryLedger(notification.client, notification.config)

    # The converter starts by making the job indexes.
    converter_jobs.ensure_indexes()
    # The gateway streams an upload into GridFS and records and queues the job.
    upload = gateway.videos.open_upload("talk.mp4", {"owner": "ada@example.com"})
    upload.write(b"video bytes")
    video_fid = upload.finish()
    abandoned = gateway.videos.open_upload("cut-off.mp4", {"owner": "ada@example.com"})
    abandoned.write(b"half")
    abandoned.abort()
    # ...and a resumable (tus) upload piece by piece, sealed into a GridFS file when whole.
    resumable = ResumableUploads(
        gateway, gateway_jobs, expiry=timedelta(hours=24), lease=timedelta(minutes=3)
    )
    pieces = [MP4_HEAD, b"the rest of the video"]
    submission = Submission(options={}, callback_url=None)
    sent = resumable.create(
        owner="ada@example.com",
        job_id="job-tus",
        length=len(b"".join(pieces)),
        filename="clip.mp4",
        submission=submission,
    )
    assert resumable.pending_bytes("ada@example.com") == len(b"".join(pieces))
    for piece in pieces:
        sent = resumable.append(
            sent, offset=sent.offset, stream=io.BytesIO(piece), content_length=len(piece)
        )
    resumable.mark_accepted(resumable.find(sent.upload_id, "ada@example.com"))
    assembled = io.BytesIO()
    converter.videos.download_to(sent.video_fid, assembled)  # as the converter reads it
    assert assembled.getvalue() == b"".join(pieces)
    dropped = resumable.create(
        owner="ada@example.com", job_id="job-x", length=100, filename="x.mp4", submission=submission
    )
    resumable.terminate(
        resumable.append(dropped, offset=0, stream=io.BytesIO(MP4_HEAD), content_length=None)
    )
    assert resumable.sweep() == 0
    gateway.videos.delete(sent.video_fid)
    job = gateway_jobs.create(
        job_id="job-1",
        owner="ada@example.com",
        video_fid=video_fid,
        filename="talk.mp4",
        size=11,
        options={},
    )
    assert gateway_jobs.mark_enqueued("job-1")
    # The converter reads the video, stores the MP3 and finishes the job.
    assert converter_jobs.start("job-1")["status"] == "processing"
    converter_jobs.set_progress("job-1", 50)
    converter_jobs.record_size("job-1", 11)  # as for a video it fetched (an import by URL)
    # A video imported by URL: the converter stores what it fetched under the job's video
    # id, and removes what a fetch cut off midway left.
    fetched = converter.videos.open_upload(
        "clip.mp4", {"owner": "ada@example.com", "job_id": "job-url"}, file_id=ObjectId()
    )
    fetched.write(b"fetched bytes")
    converter.videos.delete_pieces(fetched.finish())
    spooled = io.BytesIO()
    assert converter.videos.download_to(video_fid, spooled) == 11
    assert converter.mp3s.find_one({"metadata.job_id": "job-1"}) is None
    mp3_metadata = {"owner": "ada@example.com", "job_id": "job-1"}
    mp3_fid = converter.mp3s.put(io.BytesIO(b"mp3 bytes"), "talk.mp3", mp3_metadata)
    assert converter_jobs.finish("job-1", mp3_fid=mp3_fid)
    # Notification tells the owner, once, by email and by webhook.
    assert notification_jobs.get("job-1")["mp3_fid"] == mp3_fid
    for kind in (EMAIL, WEBHOOK):
        assert ledger.claim("job-1", kind, lease=timedelta(minutes=2)) is not None
        ledger.release("job-1", kind)
        assert ledger.claim("job-1", kind, lease=timedelta(minutes=2)) is not None
        ledger.mark_delivered("job-1", kind, outcome="sent")
        assert ledger.delivered("job-1", kind)
    ledger.mark_webhook_queued("job-1")
    # The owner looks at the job and downloads the MP3.
    assert gateway_jobs.get_owned("job-1", "ada@example.com")["status"] == "done"
    assert gateway_jobs.list_owned("ada@example.com")[1] == 1
    assert gateway_jobs.find_by_file(mp3_fid, "ada@example.com")["_id"] == "job-1"
    assert gateway_jobs.activity("ada@example.com", since=job["created_at"]).recent_jobs == 1
    stored = [bucket.bytes_of("ada@example.com") for bucket in (gateway.videos, gateway.mp3s)]
    assert stored == [11, 9]
    assert b"".join(gateway.mp3s.reader(gateway.mp3s.open(mp3_fid))) == b"mp3 bytes"
    # The converter's janitor looks for stalled, abandoned, expired and orphaned work.
    assert converter_jobs.requeue_stale(idle_for=timedelta(hours=1)) is None
    assert converter_jobs.abandoned_before(utcnow()) == []
    assert [j["_id"] for j in converter_jobs.finished_before(utcnow())] == ["job-1"]
    assert converter.mp3s.stored_before(utcnow())[0]["_id"] == mp3_fid
    assert converter_jobs.unfinished_among(["job-1"]) == set()
    assert converter_jobs.referenced_mp3s([mp3_fid]) == {mp3_fid}
    assert video_fid in converter.videos.begun_before(utcnow() + timedelta(seconds=2))
    assert converter_jobs.referenced_videos([video_fid]) == {video_fid}
    assert converter.resumable_among([video_fid, ObjectId()]) == set()
    assert not converter_jobs.fail("job-1", error="too late")
    # Deleting a job deletes its files: the gateway on request, the janitor past retention.
    gateway.delete_files_of(job | {"mp3_fid": mp3_fid})
    assert gateway_jobs.delete("job-1")
    converter.delete_files_of({"video_fid": ObjectId(), "mp3_fid": ObjectId()})
    assert not converter_jobs.delete("job-1")
    assert not converter_jobs.delete_abandoned("job-1")


def test_the_gateway_records_account_deletions_and_the_converter_finishes_them(secured, as_service):
    gateway, gateway_jobs = as_service("gateway")
    converter, converter_jobs = as_service("converter")
    converter_jobs.ensure_indexes()
    for job_id in ("old-1", "old-2"):
        upload = gateway.videos.open_upload("talk.mp4", {"owner": "ada@example.com"})
        upload.write(b"video bytes")
        gateway_jobs.create(
            job_id=job_id,
            owner="ada@example.com",
            video_fid=upload.finish(),
            filename="talk.mp4",
            size=11,
            options={},
        )
    # The gateway records the request, confirms it once auth deleted the user, and
    # erases what fits in its request: here one job.
    at_gateway = AccountDeletions(gateway.client, gateway.config)
    requested_at = at_gateway.request("ada@example.com")
    at_gateway.confirm("ada@example.com")
    assert erase("ada@example.com", requested_at, jobs=gateway_jobs, storage=gateway, limit=1) == 1

    # The converter's janitor finishes the rest and marks it done, and drops old records.
    at_converter = AccountDeletions(converter.client, converter.config)
    [deletion] = at_converter.confirmed()
    assert erase("ada@example.com", requested_at, jobs=converter_jobs, storage=converter) == 0
    at_converter.finish("ada@example.com", deletion["requested_at"])
    assert at_converter.drop_stale() == 0
    assert converter_jobs.count_owned_before("ada@example.com", requested_at) == 0
    assert secured.root[MongoConfig().videos_db]["fs.files"].count_documents({}) == 0
    record = secured.root[MongoConfig().videos_db][ACCOUNT_DELETIONS].find_one()
    assert record["state"] == "done"


def test_the_gateway_keeps_the_audit_log_and_quota_overrides_and_reads_the_totals(as_service):
    gateway, gateway_jobs = as_service("gateway")
    upload = gateway.videos.open_upload("talk.mp4", {"owner": "ada@example.com"})
    upload.write(b"video bytes")
    gateway_jobs.create(
        job_id="job-1",
        owner="ada@example.com",
        video_fid=upload.finish(),
        filename="talk.mp4",
        size=11,
        options={},
    )

    audit = AuditLog(gateway.client, gateway.config)
    audit.record(actor="root@example.com", action="quotas.set", target="ada@example.com")
    overrides = QuotaOverrides(gateway.client, gateway.config)
    overrides.set("ada@example.com", {"stored_bytes": 5, "active_jobs": None})

    entries, total = audit.page(limit=10, offset=0)
    assert (total, entries[0]["action"]) == (1, "quotas.set")
    assert overrides.of_owners(["ada@example.com"]) == {"ada@example.com": {"stored_bytes": 5}}
    assert gateway.videos.bytes_by_owner(["ada@example.com"]) == {"ada@example.com": 11}
    assert gateway.videos.totals() == (1, 11)
    assert gateway_jobs.counts_by_owner(["ada@example.com"]) == {"ada@example.com": (1, 1)}
    assert gateway_jobs.counts_by_status()["queued"] == 1
    assert gateway_jobs.list_all(status="queued")[1] == 1
    overrides.forget("ada@example.com")
    assert overrides.of("ada@example.com") == {}


def new_job(storage: Storage, jobs: JobStore) -> None:
    """Create a job, as only the gateway may."""
    jobs.create(job_id="x", owner="x", video_fid=ObjectId(), filename="x", size=1, options={})


def video_and_job(secured: SecuredMongo) -> ObjectId:
    """Store a video and its job as root; return the video's id."""
    videos = secured.root[MongoConfig().videos_db]
    video_fid = ObjectId()
    videos["fs.files"].insert_one({"_id": video_fid, "length": 0, "chunkSize": 1024})
    videos["jobs"].insert_one({"_id": "job-2", "owner": "ada@example.com", "status": "queued"})
    return video_fid


DENIED = {
    "gateway": {
        "store an MP3": lambda s, j: s.mp3s.put(io.BytesIO(b"x"), "x.mp3", {}),
        "make job indexes": lambda s, j: j.ensure_indexes(),
        "read a video's chunks": lambda s, j: s.videos.chunks.find_one(),
        "drop the jobs": lambda s, j: s.client[MongoConfig().videos_db]["jobs"].drop(),
        "use another collection": lambda s, j: s.client[MongoConfig().videos_db]["x"].find_one(),
        "read the users": lambda s, j: s.client.admin["system.users"].find_one(),
        "drop account deletions": lambda s, j: AccountDeletions(s.client, s.config).drop_stale(),
        "rewrite the audit log": lambda s, j: s.client[MongoConfig().videos_db][AUDIT].delete_many(
            {}
        ),
    },
    "converter": {
        "create a job": new_job,
        "start a resumable upload": lambda s, j: s.client[MongoConfig().videos_db][
            "tus_uploads"
        ].insert_one({}),
        "read an MP3's chunks": lambda s, j: s.mp3s.chunks.find_one(),
        "drop the MP3s": lambda s, j: s.mp3s.files.drop(),
        "read another database": lambda s, j: s.client["admin"]["x"].find_one(),
        "record an account deletion": lambda s, j: AccountDeletions(s.client, s.config).request(
            "ada@example.com"
        ),
    },
    "notification": {
        "read a video": lambda s, j: s.videos.files.find_one(),
        "read an MP3": lambda s, j: s.mp3s.find_one({}),
        "create a job": new_job,
        "delete a job": lambda s, j: j.delete("job-2"),
        "make job indexes": lambda s, j: j.ensure_indexes(),
        "read account deletions": lambda s, j: AccountDeletions(s.client, s.config).confirmed(),
    },
}


@pytest.mark.parametrize(
    ("user", "action"),
    [(user, action) for user, actions in DENIED.items() for action in actions],
)
def test_each_service_is_refused_what_its_code_does_not_do(secured, as_service, user, action):
    video_and_job(secured)
    storage, jobs = as_service(user)

    with pytest.raises(pymongo.errors.OperationFailure) as refusal:
        DENIED[user][action](storage, jobs)

    assert refusal.value.code == UNAUTHORIZED


def test_running_the_script_again_rotates_a_password(node, secured, as_service):
    old = dict(secured.passwords)
    secured.apply_init_script(node, {**old, "notification": "rotated-Pw3"})

    _, jobs = as_service("notification")
    video_and_job(secured)
    assert jobs.get("job-2")["status"] == "queued"
    stale = Storage(secured.config("notification", old["notification"]))
    try:
        with pytest.raises(pymongo.errors.OperationFailure, match="Authentication failed"):
            JobStore(stale.client, stale.config).get("job-2")
    finally:
        stale.close()


# ------------------------------------------------------------- the deployments
def k8s_environment(kind: str, name: str, secrets: dict[str, dict[str, str]]) -> dict[str, str]:
    """Return the environment of a workload's one container, Secrets from ``secrets``."""
    docs = objects()
    (container,) = pod_containers(find(kind, name, docs))
    return container_environment(container, docs, secrets)


def test_compose_gives_the_init_script_each_services_own_login(
    node, docker_compose, filled_env_file
):
    services = render_compose(filled_env_file)["services"]
    mongodb = compose_environment(services["mongodb"])

    for user in SERVICES:
        assert mongodb[uri_variable(user)] == compose_environment(services[user])["MONGO_URI"]
    assert compose_mounts(services["mongodb"])["/docker-entrypoint-initdb.d"] == str(MONGO_DEPLOY)
    assert len(init_calls(node, mongodb)) == len(DEFINITIONS["roles"]) + len(SERVICES)


def test_compose_with_the_example_env_stops_mongodbs_first_start(node, docker_compose):
    mongodb = compose_environment(render_compose(ENV_EXAMPLE)["services"]["mongodb"])

    result = run_init(node, mongodb)

    assert result.returncode != 0
    assert "placeholder password" in result.stderr


def test_k8s_gives_the_init_script_each_services_own_login(node):
    filled = filled_secret_templates()
    mongodb = k8s_environment("StatefulSet", "mongodb", filled)

    for user in SERVICES:
        service = k8s_environment("Deployment", user, filled)
        assert mongodb[uri_variable(user)] == service["MONGO_URI"]
    assert len(init_calls(node, mongodb)) == len(DEFINITIONS["roles"]) + len(SERVICES)
    placeholders = k8s_environment("StatefulSet", "mongodb", secret_templates())
    assert run_init(node, placeholders).returncode != 0


def test_k8s_mounts_the_same_init_script_as_compose():
    data = find("ConfigMap", "mongodb-init")["data"]
    assert data == {path.name: path.read_text() for path in (INIT_SCRIPT, DEFINITIONS_FILE)}
    pod = find("StatefulSet", "mongodb")["spec"]["template"]["spec"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    (container,) = pod["containers"]
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    assert volumes[mounts["/docker-entrypoint-initdb.d"]]["configMap"]["name"] == "mongodb-init"

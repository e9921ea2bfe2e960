"""The local servers the suite relies on are real and behave as the services expect."""

from __future__ import annotations

import smtplib
import socket
from email.message import EmailMessage

import gridfs
import pymongo
import pytest

from devstack import servers
from devstack.mailsink import MailSink
from devstack.tcp_proxy import TcpProxy


def test_mongod_speaks_mongodb_and_gridfs(mongo_uri):
    client = pymongo.MongoClient(mongo_uri, serverSelectionTimeoutMS=5000)
    try:
        assert client.admin.command("ping")["ok"] == 1
        bucket = gridfs.GridFSBucket(client["devstack_check"])
        payload = bytes(range(256)) * 4096  # 1 MiB over several chunks
        file_id = bucket.upload_from_stream("clip.mp4", payload, metadata={"owner": "a@b.c"})
        assert bucket.open_download_stream(file_id).read() == payload
        found = client["devstack_check"]["fs.files"].find_one({"metadata.owner": "a@b.c"})
        assert found["_id"] == file_id
        assert found["length"] == len(payload)
    finally:
        client.drop_database("devstack_check")
        client.close()


def test_mail_sink_keeps_what_it_receives(mailbox):
    message = EmailMessage()
    message["From"] = "video2mp3@localhost"
    message["To"] = "user@example.com"
    message["Subject"] = "Your MP3 is ready"
    message.set_content("fid: 123")
    with smtplib.SMTP(mailbox.host, mailbox.port, timeout=5) as smtp:
        smtp.send_message(message)

    [received] = mailbox.wait_for(1, to="user@example.com", timeout=5)
    assert received["Subject"] == "Your MP3 is ready"
    assert received.get_content().strip() == "fid: 123"


def test_mail_sink_writes_readable_files(tmp_path):
    mail = MailSink(servers.free_port(), folder=tmp_path / "mail")
    mail.start()
    try:
        with smtplib.SMTP(mail.host, mail.port, timeout=5) as smtp:
            smtp.sendmail("a@localhost", ["b@example.com"], b"Subject: hi\r\n\r\nbody\r\n")
        mail.wait_for(1, timeout=5)
    finally:
        mail.stop()
    [path] = (tmp_path / "mail").glob("*.eml")
    assert b"Subject: hi" in path.read_bytes()


def test_wait_for_times_out_when_mail_does_not_come(mailbox):
    with pytest.raises(TimeoutError, match="0 of 1"):
        mailbox.wait_for(1, timeout=0.2)


def test_tcp_proxy_forwards_then_refuses(mongo_server):
    proxy = TcpProxy(mongo_server.host, mongo_server.port)
    try:
        client = pymongo.MongoClient(proxy.mongo_uri, serverSelectionTimeoutMS=1000)
        assert client.admin.command("ping")["ok"] == 1
        proxy.refuse()
        with pytest.raises(pymongo.errors.PyMongoError):
            client.admin.command("ping")
        proxy.accept()
        assert client.admin.command("ping")["ok"] == 1
        client.close()
    finally:
        proxy.close()


def test_system_server_reports_how_to_start_a_missing_server():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    server = servers.SystemServer(
        name="Imaginary",
        host="127.0.0.1",
        port=closed_port,
        start_command=["no-such-server-binary"],
        stop_command=["true"],
        hint="Install it first.",
    )
    with pytest.raises(servers.ServerUnavailable, match=r"not installed\. Install it first\."):
        server.ensure()
    assert not server.started_by_us


def test_mongod_is_a_replica_set_with_transactions(mongo_uri):
    client = pymongo.MongoClient(mongo_uri, serverSelectionTimeoutMS=5000)
    things = client["devstack_txn"]["things"]
    try:
        assert client.admin.command("hello")["setName"] == servers.MongoServer.REPLICA_SET
        things.insert_one({"n": 0})  # a transaction cannot create its collection on 6.0
        with client.start_session() as session:
            with session.start_transaction():
                things.insert_one({"n": 1}, session=session)
                session.abort_transaction()
            assert things.count_documents({"n": 1}) == 0
            with session.start_transaction():
                things.insert_one({"n": 1}, session=session)
        assert things.count_documents({"n": 1}) == 1
    finally:
        client.drop_database("devstack_txn")
        client.close()


def test_mongod_keeps_its_data_and_its_set_across_a_restart(tmp_path):
    server = servers.MongoServer(tmp_path / "data")
    server.start()
    try:
        with pymongo.MongoClient(server.uri, serverSelectionTimeoutMS=5000) as client:
            client["kept"]["things"].insert_one({"_id": "survivor"})
        server.kill()  # a crash: the journal must bring the write back
        server.start()  # the set exists already: no second initiate, primary again
        with pymongo.MongoClient(server.uri, serverSelectionTimeoutMS=5000) as client:
            assert client["kept"]["things"].find_one({"_id": "survivor"}) is not None
            assert client.admin.command("hello")["isWritablePrimary"]
    finally:
        server.stop()
    assert (tmp_path / "data").is_dir(), "a folder the caller gave is the caller's to remove"


def test_mongod_without_a_data_folder_removes_its_own():
    server = servers.MongoServer()
    server.start()
    data_dir = server.data_dir
    assert data_dir.is_dir()
    server.stop()
    assert not data_dir.exists()

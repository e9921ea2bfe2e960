"""The account commands (``login --api-key``, ``keys``, ``me``, ``password``, ``export``,
``delete-account``, ``logout``), run as a user runs them against the real stack."""

from __future__ import annotations

import json
import re
import time

import pytest
import requests

from tests.support.media import make_video
from tests.support.sessions import wait_until_refused
from tests.support.system import login
from video2mp3.config import Credentials, api_key_from_env, load_credentials, save_credentials

KEY_LINE = re.compile(r"^v2m_(?P<id>[0-9a-f]{12})_[A-Za-z0-9_-]{43}$")
JOB_LINE = re.compile(r"queued as job (?P<job_id>[0-9a-f]{32})$", re.MULTILINE)


def credentials_file(config_home):
    return config_home / "video2mp3" / "credentials.json"


def one_error_line(result, code: int) -> str:
    """Assert the command failed with ``code`` and one error line; return that line."""
    assert result.code == code, (result.out, result.err)
    assert "Traceback" not in result.err
    errors = [line for line in result.err.splitlines() if line.startswith("video2mp3: ")]
    assert len(errors) == 1, result.err
    return errors[0]


def create_key(cli, name: str, *scope_flags: str) -> tuple[str, str]:
    """Create a key through the command; return (its id, the key)."""
    result = cli("keys", "create", name, *scope_flags)
    assert result.code == 0, result.err
    match = KEY_LINE.match(result.out.strip())
    assert match, result.out
    assert result.out.count("\n") == 1  # stdout is the key alone: KEY=$(video2mp3 keys create)
    assert "only time it is shown" in result.err
    return match["id"], result.out.strip()


# --- pure parts -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["v2m_abc", "Bearer v2m_0123456789ab_" + "a" * 43, "v2m_0123456789AB_" + "a" * 43, "x" * 60],
)
def test_a_malformed_key_in_the_environment_is_refused_by_name(value):
    with pytest.raises(Exception, match="VIDEO2MP3_API_KEY does not hold an API key"):
        api_key_from_env({"VIDEO2MP3_API_KEY": value})


def test_an_empty_key_variable_counts_as_unset():
    assert api_key_from_env({"VIDEO2MP3_API_KEY": "  "}) is None
    key = "v2m_0123456789ab_" + "A" * 43
    assert api_key_from_env({"VIDEO2MP3_API_KEY": f" {key}\n"}) == key


def test_a_stored_key_never_expires_client_side(tmp_path):
    path = tmp_path / "credentials.json"
    key = "v2m_0123456789ab_" + "A" * 43
    save_credentials(Credentials(server="http://a", email="", token=key, expires_at=None), path)

    stored = load_credentials(path)

    assert stored.expires_at is None
    assert not stored.expired(now=4e9)
    assert stored.is_api_key
    assert stored.key_id == "0123456789ab"
    session = Credentials(server="http://a", email="e", token="eyJ.x.y", expires_at=1.0)
    assert session.expired(now=2.0)
    assert not session.is_api_key
    assert session.key_id is None


# --- API keys ---------------------------------------------------------------------------


def test_keys_create_list_use_and_revoke(cli, logged_in, system, monkeypatch, tmp_path):
    key_id, key = create_key(cli, "nightly backup", "--scope", "jobs:read")

    listed = cli("keys", "list")
    assert listed.code == 0, listed.err
    header, *rows = listed.out.splitlines()
    assert header.split() == ["ID", "NAME", "SCOPES", "CREATED", "EXPIRES", "LAST", "USED"]
    [row] = [row for row in rows if row.startswith(key_id)]
    assert "nightly backup" in row
    assert "jobs:read" in row
    assert "jobs:write" not in row
    assert key.split("_")[-1] not in listed.out  # never the secret again

    # The key in the environment wins over the stored login, and reads.
    monkeypatch.setenv("VIDEO2MP3_API_KEY", key)
    me = cli("me")
    assert me.code == 0, me.err
    assert re.search(rf"^account: +{re.escape(logged_in.email)}$", me.out, re.MULTILINE)
    assert re.search(rf"logged in with: +API key {key_id} \(scopes: jobs:read\)", me.out)
    assert cli("jobs").code == 0

    # Writing needs jobs:write, and the message says so.
    source = make_video(tmp_path / "clip.mp4", seconds=1)
    refused = one_error_line(cli("convert", str(source)), 3)
    assert "lacks the jobs:write scope" in refused, refused
    # Managing keys needs a password login, whatever the key's scopes.
    refused = one_error_line(cli("keys", "list"), 3)
    assert "an API key cannot do this" in refused
    assert "video2mp3 login" in refused

    monkeypatch.delenv("VIDEO2MP3_API_KEY")
    revoked = cli("keys", "revoke", f"v2m_{key_id}")
    assert revoked.code == 0, revoked.err
    assert f"Revoked the key {key_id}" in revoked.out
    assert key_id not in cli("keys", "list").out
    wait_until_refused(system, key)
    again = one_error_line(cli("keys", "revoke", key_id), 1)
    assert "video2mp3: " in again


def test_keys_create_with_both_scopes_by_default_and_an_expiry(cli, logged_in):
    key_id, _ = create_key(cli, "laptop", "--expires-in-days", "7")

    listed = cli("keys", "list").out
    [row] = [row for row in listed.splitlines() if row.startswith(key_id)]
    assert "jobs:read,jobs:write" in row
    assert "never" in row  # not used yet; it expires, so that column has a date
    expiry = time.strftime("%Y-%m-%d", time.localtime(time.time() + 7 * 86400))
    assert expiry in row


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (("keys", "create", "x", "--expires-in-days", "0"), "must be from 1 to 3650"),
        (("keys", "create", "x", "--expires-in-days", "3651"), "must be from 1 to 3650"),
        (("keys", "create", "x", "--scope", "admin"), "invalid choice"),
    ],
)
def test_bad_key_options_exit_2_before_anything_is_sent(cli, argv, says):
    result = cli(*argv)
    assert result.code == 2
    assert says in result.err


def test_the_server_refuses_a_bad_key_name_in_one_line(cli, logged_in):
    message = one_error_line(cli("keys", "create", "n" * 101), 1)
    assert "name" in message.lower()


# --- login --api-key --------------------------------------------------------------------


def test_login_with_an_api_key_checks_it_and_stores_it_without_expiry(
    cli, logged_in, config_home, system
):
    key_id, key = create_key(cli, "ci")
    assert cli("logout").code == 0

    result = cli("login", "--api-key", "--password-stdin", stdin=f"{key}\n")

    assert result.code == 0, result.err
    assert f"with the API key {key_id} of {logged_in.email}" in result.out
    stored = json.loads(credentials_file(config_home).read_text())
    assert stored == {
        "server": system.gateway,
        "email": logged_in.email,
        "token": key,
        "expires_at": None,
    }
    me = cli("me")
    assert me.code == 0, me.err
    assert f"API key {key_id}" in me.out
    # Logging out forgets the key here but does not revoke it.
    out = cli("logout")
    assert out.code == 0
    assert f"video2mp3 keys revoke {key_id}" in out.err
    assert not credentials_file(config_home).exists()
    assert requests.get(
        f"{system.gateway}/jobs", headers={"Authorization": f"Bearer {key}"}, timeout=10
    ).ok


def test_login_with_a_key_without_read_scope_still_verifies_it(cli, logged_in, config_home):
    key_id, key = create_key(cli, "uploader", "--scope", "jobs:write")

    result = cli("login", "--api-key", "--password-stdin", stdin=key)

    assert result.code == 0, result.err
    assert f"API key {key_id} (without jobs:read" in result.out
    assert json.loads(credentials_file(config_home).read_text())["token"] == key


def test_login_with_an_unknown_or_malformed_key_stores_nothing(cli, config_home, system):
    unknown = "v2m_0123456789ab_" + "A" * 43
    message = one_error_line(cli("login", "--api-key", "--password-stdin", stdin=unknown), 3)
    assert "video2mp3: " in message
    assert not credentials_file(config_home).exists()

    message = one_error_line(cli("login", "--api-key", "--password-stdin", stdin="hunter2\n"), 2)
    assert "not an API key" in message
    assert not credentials_file(config_home).exists()


def test_a_refused_key_in_the_environment_says_to_check_it(cli, logged_in, monkeypatch):
    monkeypatch.setenv("VIDEO2MP3_API_KEY", "v2m_0123456789ab_" + "A" * 43)

    message = one_error_line(cli("jobs"), 3)

    assert "check the API key in $VIDEO2MP3_API_KEY" in message


# --- me, password, logout ---------------------------------------------------------------


def test_me_shows_the_email_the_login_and_the_quotas(cli, logged_in):
    result = cli("me")

    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert re.fullmatch(rf"account: +{re.escape(logged_in.email)}", lines[0])
    assert re.fullmatch(r"logged in with: +session \(email and password\)", lines[1])
    assert [line.split(":")[0] for line in lines[2:]] == ["storage", "active jobs", "uploads"]


def test_password_change_stores_the_new_token_and_ends_the_others(
    cli, logged_in, config_home, system
):
    old_token = logged_in.token  # another session of the same user (the fixture's login)
    new_password = "a-new-password-" + logged_in.password[-8:]

    wrong = cli("password", "--password-stdin", stdin=f"not-it\n{new_password}\n")
    assert "current password is wrong" in one_error_line(wrong, 3)

    before = json.loads(credentials_file(config_home).read_text())["token"]
    result = cli("password", "--password-stdin", stdin=f"{logged_in.password}\n{new_password}\n")

    assert result.code == 0, result.err
    assert "Other sessions end within 30 seconds" in result.out
    after = json.loads(credentials_file(config_home).read_text())["token"]
    assert after != before
    assert cli("jobs").code == 0  # this session goes on with the new token
    assert wait_until_refused(system, old_token)["error"] == "token_revoked"
    assert cli("jobs").code == 0
    assert login(system.gateway, logged_in.email, new_password)
    refused = requests.post(
        f"{system.gateway}/login", auth=(logged_in.email, logged_in.password), timeout=30
    )
    assert refused.status_code == 401


def test_password_change_with_an_api_key_names_the_session_it_needs(cli, logged_in, monkeypatch):
    _, key = create_key(cli, "script")
    monkeypatch.setenv("VIDEO2MP3_API_KEY", key)

    result = cli("password", "--password-stdin", stdin=f"{logged_in.password}\nnew-pass-123456\n")

    assert "an API key cannot do this" in one_error_line(result, 3)


def test_logout_ends_the_token_on_the_server(cli, logged_in, config_home, system):
    token = json.loads(credentials_file(config_home).read_text())["token"]

    result = cli("logout")

    assert result.code == 0, result.err
    assert f"Logged out of {system.gateway}" in result.out
    assert not credentials_file(config_home).exists()
    assert wait_until_refused(system, token)["error"] == "token_revoked"


# --- export and delete-account ----------------------------------------------------------


def test_export_saves_the_account_and_its_jobs_as_json(cli, logged_in, tmp_path):
    source = make_video(tmp_path / "clip.mp4", seconds=1)
    queued = cli("convert", str(source))
    assert queued.code == 0, queued.err
    job_id = JOB_LINE.search(queued.out)["job_id"]
    out = tmp_path / "out"
    out.mkdir()

    first = cli("export", "-o", str(out))
    second = cli("export", "-o", str(out))
    named = cli("export", "-o", str(tmp_path / "mine.json"))

    assert first.code == second.code == named.code == 0, (first.err, second.err, named.err)
    files = sorted(out.iterdir(), key=lambda path: len(path.name))
    # The server's name, then the second beside it rather than over it.
    assert re.fullmatch(r"video2mp3-export-\d{4}-\d{2}-\d{2}\.json", files[0].name)
    assert [path.name for path in files[1:]] == [files[0].name.replace(".json", " (1).json")]
    assert f"saved {files[0]}" in first.out
    for path in (*files, tmp_path / "mine.json"):
        export = json.loads(path.read_text())
        assert export["account"]["email"] == logged_in.email
        assert [job["job_id"] for job in export["jobs"]] == [job_id]
        assert export["jobs"][0]["filename"] == "clip.mp4"


def test_delete_account_asks_for_the_email_then_forgets_the_login(
    cli, logged_in, config_home, system
):
    mistyped = cli("delete-account", stdin="someone-else@e2e.test\n")
    assert mistyped.code == 2, mistyped.err
    # After the prompt (a terminal echoes the typed line and its newline; a pipe does not).
    assert mistyped.err.endswith(
        "video2mp3: 'someone-else@e2e.test' is not the email of this account; nothing was deleted\n"
    )
    assert credentials_file(config_home).exists()
    assert login(system.gateway, logged_in.email, logged_in.password)

    result = cli("delete-account", stdin=f"{logged_in.email}\n")

    assert result.code == 0, result.err
    assert "Account deleted" in result.out
    assert f"Type your email ({logged_in.email}) to confirm" in result.err
    assert not credentials_file(config_home).exists()
    again = cli(
        "login", "--email", logged_in.email, "--password-stdin", stdin=f"{logged_in.password}\n"
    )
    one_error_line(again, 3)


def test_delete_account_with_confirm_deletes_the_jobs(cli, logged_in, system, tmp_path):
    source = make_video(tmp_path / "clip.mp4", seconds=1)
    assert cli("convert", str(source)).code == 0
    token = load_credentials(credentials_file(tmp_path / "config")).token

    result = cli("delete-account", "--confirm", logged_in.email)

    assert result.code == 0, result.err
    left = system.videos.jobs.count_documents({"owner": logged_in.email})
    if "with all its jobs" in result.out:
        assert left == 0
    else:  # the server ran out of its time for this request: the janitor finishes
        assert "its last job goes within minutes" in result.out, result.out
    wait_until_refused(system, token)

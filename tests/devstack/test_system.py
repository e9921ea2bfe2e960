"""The environment devstack.system gives the services, as make run starts them."""

from __future__ import annotations

import pytest

from common.config import EgressConfig, Env
from devstack.system import system_env


def test_make_run_lets_callbacks_reach_this_machine_on_any_port(tmp_path):
    egress = EgressConfig.from_env(Env(system_env(tmp_path, given={})))
    assert egress == EgressConfig(allow_private=True, ports=None)


@pytest.mark.parametrize("name", ["EGRESS_ALLOW_PRIVATE", "WEBHOOK_ALLOW_PRIVATE"])
def test_make_run_honours_the_egress_policy_it_is_given(tmp_path, name):
    environ = {name: "false", "EGRESS_PORTS": "443"}
    egress = EgressConfig.from_env(Env(system_env(tmp_path, given=environ)))
    assert egress == EgressConfig(allow_private=False, ports=frozenset({443}))

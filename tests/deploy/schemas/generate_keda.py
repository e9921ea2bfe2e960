"""Write keda-v2.16.1.json: the JSON Schemas of KEDA's ScaledObject and TriggerAuthentication.

They come from cloudcoil-models-keda 2.16.1.0 (PyPI), pydantic models generated
from KEDA v2.16.1's CRDs. That package cannot live in the project's venv (it
pulls in cloudcoil, whose pytest plugin breaks the suite without extra
packages), so the schema is exported once and kept here. Regenerate with:

    python3 -m venv /tmp/keda-models
    /tmp/keda-models/bin/pip install cloudcoil-models-keda==2.16.1.0
    /tmp/keda-models/bin/python tests/deploy/schemas/generate_keda.py

The export is pydantic's ``model_json_schema`` with one change: objects that
list their properties get ``additionalProperties: false``, as the API server
(and kubectl's strict field validation) rejects fields a CRD does not define.
"""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path
from typing import Any

from cloudcoil.models.keda import v1alpha1

KINDS = ("ScaledObject", "TriggerAuthentication")


def close_objects(schema: Any) -> Any:
    """Return ``schema`` with every object that lists properties closed to others."""
    if isinstance(schema, dict):
        closed = {key: close_objects(value) for key, value in schema.items()}
        if "properties" in closed and "additionalProperties" not in closed:
            closed["additionalProperties"] = False
        return closed
    if isinstance(schema, list):
        return [close_objects(item) for item in schema]
    return schema


def main() -> None:
    """Write the schemas next to this file."""
    schemas = {
        kind: close_objects(getattr(v1alpha1, kind).model_json_schema(by_alias=True))
        for kind in KINDS
    }
    document = {
        "source": f"cloudcoil-models-keda=={version('cloudcoil-models-keda')} (KEDA v2.16.1 CRDs)",
        "kinds": schemas,
    }
    target = Path(__file__).with_name("keda-v2.16.1.json")
    target.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()

"""Fixtures for the Helm chart tests (helpers live in chartlib.py)."""
import json

import pytest
import yaml

from chartlib import CHART, Renderer


@pytest.fixture(scope="session")
def renderer(tmp_path_factory):
    return Renderer(tmp_path_factory.mktemp("helm"))


@pytest.fixture(scope="session")
def values_yaml():
    return yaml.safe_load((CHART / "values.yaml").read_text())


@pytest.fixture(scope="session")
def schema():
    return json.loads((CHART / "values.schema.json").read_text())

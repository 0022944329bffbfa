"""Deploying a plain folder (one without a template): the folder is one function.

Its name is the folder's name; its handler ``app.handler`` (``app.lambda_handler`` when
app.py defines that and no ``handler``); its runtime the newest ``python3.x`` this host
runs; its requirements.txt is installed as for a SAM CodeUri. It gets a function URL
(AuthType NONE) so it answers HTTP at once. The template it stands for is a SAM one, so
a folder deploys exactly as the equivalent template would; write a template.yaml for
anything more (memory, environment, events...)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from nimbus.deploy.problems import DeployError
from nimbus.deploy.template import Template, load_text

TEMPLATE_NAMES = ("template.yaml", "template.yml", "template.json")


def function_name(folder: Path) -> str:
    name = re.sub(r"[^A-Za-z0-9_-]", "-", folder.resolve().name).strip("-_")[:64]
    if not name:
        raise DeployError(f"cannot name a function after the folder {folder}: give --stack")
    return name


def _handler(folder: Path) -> str:
    app = folder / "app.py"
    if not app.is_file():
        raise DeployError(
            f"{folder} has no template.yaml and no app.py: put the function in app.py "
            "(def handler(event, context)), or write a SAM template.yaml"
        )
    source = app.read_text(errors="replace")
    if re.search(r"^def handler\(", source, re.M) is None and re.search(
        r"^def lambda_handler\(", source, re.M
    ):
        return "app.lambda_handler"
    return "app.handler"


def newest_python() -> str:
    from nimbus.sandbox import catalog

    names = [n for n in catalog.names() if n.startswith("python3.")]
    if not names:
        raise DeployError("this host has no python3.x runtime: write a template.yaml with Runtime")
    return max(names, key=lambda n: int(n.split(".")[1]))


def template_for(folder: Path) -> Template:
    """The SAM template a plain folder stands for."""
    body = {
        "Transform": "AWS::Serverless-2016-10-31",
        "Resources": {"Function": {"Type": "AWS::Serverless::Function", "Properties": {
            "FunctionName": function_name(folder), "CodeUri": ".", "Handler": _handler(folder),
            "Runtime": newest_python(), "FunctionUrlConfig": {"AuthType": "NONE"},
        }}},
    }  # fmt: skip
    return load_text(json.dumps(body), None, folder.resolve())


def find(target: Path) -> tuple[Template | None, Path]:
    """(the template file's path or None for a plain folder, the folder state lives in)."""
    from nimbus.deploy import template as templates

    if target.is_file():
        return templates.load(target), target.resolve().parent
    if not target.is_dir():
        raise DeployError(f"{target} is neither a template file nor a folder")
    for name in TEMPLATE_NAMES:
        if (target / name).is_file():
            return templates.load(target / name), target.resolve()
    return None, target.resolve()

"""The Dockerfile's builder stage, replayed without Docker (no engine runs here).

The build context is cut by .dockerignore (Docker's rules: patterns in order, the last
match wins, `!` re-includes, a pattern matching a folder matches what is inside), the
builder stage's COPY and RUN instructions run in order in a scratch folder (uv's cache
mounts dropped, --offline added: the locked wheels come from uv's cache), and the
virtualenv that the runtime stage would copy must then work on its own: every
service's command is there, the sources are not needed, no dev tool got in.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
COMMANDS = (
    "codiv",
    "codiv-gateway",
    "codiv-scheduler",
    "codiv-publisher",
    "codiv-auth",
    "codiv-pinterest-emulator",
)


def dockerignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    out: list[tuple[bool, re.Pattern[str]]] = []
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        include = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        rx = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                rx += "(?:.*/)?"
                i += 3
            elif pattern.startswith("**", i):
                rx += ".*"
                i += 2
            elif pattern[i] == "*":
                rx += "[^/]*"
                i += 1
            elif pattern[i] == "?":
                rx += "[^/]"
                i += 1
            elif pattern[i] == "[":
                end = pattern.index("]", i)
                rx += pattern[i : end + 1]
                i = end + 1
            else:
                rx += re.escape(pattern[i])
                i += 1
        out.append((include, re.compile(rx + r"\Z")))
    return out


def in_context(rel: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    parts = rel.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for include, rx in patterns:
        if any(rx.match(p) for p in prefixes):
            excluded = not include
    return not excluded


def build_context(dest: Path) -> None:
    patterns = dockerignore_patterns()
    for path in ROOT.rglob("*"):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith((".git/", ".venv/")) or not path.is_file():
            continue
        if in_context(rel, patterns):
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)


def builder_stage() -> list[tuple[str, str]]:
    """(instruction, arguments) of the stage named builder, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    steps: list[tuple[str, str]] = []
    inside = False
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, args = line.partition(" ")
        if instruction.upper() == "FROM":
            inside = args.split()[-1] == "builder"
            continue
        if inside:
            steps.append((instruction.upper(), args.strip()))
    return steps


def test_dockerignore_keeps_what_the_build_needs_and_nothing_else() -> None:
    patterns = dockerignore_patterns()
    assert in_context("uv.lock", patterns)
    assert in_context("services/auth/src/codiv_auth/migrations/0001_init.sql", patterns)
    assert in_context("libs/common/src/codiv_common/migrations/0001_outbox_inbox.sql", patterns)
    assert not in_context(".git/config", patterns)
    assert not in_context(".venv/bin/python", patterns)
    assert not in_context("tests/conftest.py", patterns)
    assert not in_context("services/auth/src/codiv_auth/__pycache__/app.cpython-311.pyc", patterns)
    assert not in_context("services/auth/.env", patterns)


def test_builder_stage_produces_a_self_contained_venv(tmp_path: Path) -> None:
    uv = shutil.which("uv") or shutil.which("uv", path=str(Path(sys.executable).parent))
    if uv is None:
        pytest.skip("uv is not installed")
    context, workdir = tmp_path / "context", tmp_path / "src"
    build_context(context)
    env = dict(os.environ)
    venv = tmp_path / "app" / ".venv"
    for instruction, args in builder_stage():
        if instruction == "ENV":
            for assignment in shlex.split(args):
                key, _, value = assignment.partition("=")
                env[key] = value
        elif instruction == "WORKDIR":
            workdir.mkdir(parents=True, exist_ok=True)
        elif instruction == "COPY" and not args.startswith("--from"):
            *sources, dest = args.split()
            for source in sources:
                target = workdir / dest.removeprefix("./")
                if (context / source).is_dir():
                    shutil.copytree(context / source, target, dirs_exist_ok=True)
                else:
                    target = target / source if dest.endswith("/") or dest == "./" else target
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(context / source, target)
        elif instruction == "RUN":
            command = re.sub(r"--mount=\S+", "", args).strip()
            assert command.startswith("uv sync"), command
            # Here: this machine's Python and a scratch venv; wheels from uv's cache.
            env.update(
                UV_PYTHON=sys.executable,
                UV_PROJECT_ENVIRONMENT=str(venv),
                UV_COMPILE_BYTECODE="0",
                VIRTUAL_ENV="",
            )
            done = subprocess.run(
                [uv, *shlex.split(command)[1:], "--offline"],
                cwd=workdir,
                env=env,
                capture_output=True,
                text=True,
                timeout=240,
                check=False,
            )
            assert done.returncode == 0, f"{command}\n{done.stderr}"
    # The runtime stage copies only the venv: the sources must not be needed.
    shutil.rmtree(workdir)
    for command in COMMANDS:
        assert (venv / "bin" / command).exists(), command
    assert not (venv / "bin" / "pytest").exists(), "a dev dependency is in the image"
    site = next((venv / "lib").glob("python3.*/site-packages"))
    for service in ("gateway", "auth", "scheduler", "publisher"):
        assert list((site / f"codiv_{service}" / "migrations").glob("*.sql")), service
    assert not list(site.glob("*.pth")) or all(
        str(tmp_path) not in p.read_text() for p in site.glob("*.pth")
    ), "workspace members installed editable"
    check = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import codiv_gateway.__main__, codiv_auth.__main__, codiv_scheduler.__main__,"
            " codiv_publisher.__main__",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert check.returncode == 0, check.stderr
    helped = subprocess.run(
        [str(venv / "bin" / "codiv"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert helped.returncode == 0, helped.stderr

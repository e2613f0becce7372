"""The Dockerfile's essentials, read statically (the build itself is replayed elsewhere)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
COMPILERS = re.compile(r"\b(build-essential|gcc|g\+\+|clang|make|cmake|python3?-dev|libc6?-dev)\b")


def stages() -> list[tuple[str, list[tuple[str, str]]]]:
    """[(stage name, [(INSTRUCTION, args)])], continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    out: list[tuple[str, list[tuple[str, str]]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, args = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            words = args.split()
            name = words[-1] if len(words) >= 3 and words[-2].upper() == "AS" else words[0]
            out.append((name, []))
        elif out:
            out[-1][1].append((instruction, args.strip()))
    return out


def args_defaults() -> dict[str, str]:
    text = (ROOT / "Dockerfile").read_text()
    return dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.MULTILINE))


def test_multi_stage_with_a_separate_runtime() -> None:
    names = [name for name, _ in stages()]
    assert "builder" in names
    assert names[-1] == "runtime"
    assert len(names) >= 3  # uv, builder, runtime


def test_base_images_are_pinned() -> None:
    for name, value in args_defaults().items():
        if name.endswith("_IMAGE"):
            assert re.search(r":[\w.-]+$", value) or "@sha256:" in value, value
            assert not value.endswith(":latest"), value


def test_builder_installs_exactly_the_lock_without_dev_tools() -> None:
    (builder,) = [steps for name, steps in stages() if name == "builder"]
    copies = " ".join(args for ins, args in builder if ins == "COPY")
    assert "uv.lock" in copies
    syncs = [args for ins, args in builder if ins == "RUN" and "uv sync" in args]
    assert len(syncs) == 2  # dependencies layer, then the workspace members
    for run in syncs:
        assert "--frozen" in run  # never re-resolve: exactly uv.lock
        assert "--no-dev" in run
        assert "--all-packages" in run
        assert "--no-editable" in run  # the runtime stage has no sources
    assert "--no-install-workspace" in syncs[0]


def test_runtime_stage_is_non_root_and_has_no_compilers() -> None:
    _, runtime = stages()[-1]
    users = [args for ins, args in runtime if ins == "USER"]
    assert users, "the runtime stage sets no USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit(), "USER must be a numeric uid"
    assert int(uid) > 0, "USER must not be root"
    assert not gid or (gid.isdigit() and int(gid) > 0)
    for ins, args in runtime:
        if ins == "RUN":
            assert not COMPILERS.search(args), f"compiler in the final image: {args}"
            assert "apt-get install" not in args, args
            assert "pip install" not in args, args
        if ins == "COPY":
            assert args.startswith("--from=builder"), f"runtime copies from the context: {args}"
            assert "/app/.venv" in args
    # No ENTRYPOINT: each Deployment picks its program with `command:`.
    assert all(ins != "ENTRYPOINT" for _, steps in stages() for ins, _ in steps)
    env = " ".join(args for ins, args in runtime if ins == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env  # read-only root filesystem
    assert "HOST=0.0.0.0" in env


def test_manifests_run_as_the_image_user() -> None:
    _, runtime = stages()[-1]
    uid = [args for ins, args in runtime if ins == "USER"][-1].split(":")[0]
    deployment = (ROOT / "deploy/k8s/base/deployment-gateway.yaml").read_text()
    assert f"runAsUser: {uid}" in deployment

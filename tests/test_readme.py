"""The README's two set-up commands stay true: CI runs the test command verbatim, and every
command and Gin file the README names exists."""
import re

from conftest import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
CI = (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8")


def _setup_commands() -> list[str]:
    section = README.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)\n```", section, flags=re.S)


def test_ci_runs_the_readme_test_command_verbatim():
    main_job, tests = _setup_commands()
    assert "pytest" in tests and tests in CI.splitlines()
    assert "recjax train --gin_file=gin/experiments/quickstart.gin" in main_job


def test_readme_names_only_existing_commands_and_files():
    from recjax.cli import COMMANDS

    code = "\n".join(re.findall(r"```bash\n(.*?)\n```", README, flags=re.S))
    for command in re.findall(r"^\s*recjax ([a-z_]+)", code, flags=re.M):
        assert command in COMMANDS, command
    for path in set(re.findall(r"(gin/[\w/]+\.gin)", README)):
        assert (REPO_ROOT / path).is_file(), path
    for command in COMMANDS:
        assert (REPO_ROOT / "recjax" / "cli" / f"{command}.py").is_file(), f"recjax {command} has no binary"
        assert (REPO_ROOT / "recjax" / f"{command}.py").is_file(), f"python -m recjax.{command} has no entry point"

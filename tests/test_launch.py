"""launch/: --dry_run prints the exact commands (and the sbatch script) and executes nothing."""
import os
import shlex
import subprocess
import sys
import textwrap

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)  # `launch` is a directory of scripts beside the package

from launch import common, local, slurm, tpu_vm  # noqa: E402

TRAIN_ARGS = ["--gin_file=gin/experiments/beauty_xl_rec_aux.gin",
              "--gin.INITIAL_CHECKPOINT_PATH='checkpoints/flan t5 xl'"]  # a space and quotes: quoting matters


@pytest.fixture
def no_subprocess(monkeypatch):
    """Any attempt to run a program fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"a dry run tried to execute {args!r}")
    for name in ("run", "Popen", "call", "check_call", "check_output"):
        monkeypatch.setattr(subprocess, name, refuse)
    monkeypatch.setattr(os, "system", refuse)
    monkeypatch.setattr(os, "execvp", refuse)


def _commands(out: str) -> list[list[str]]:
    return [shlex.split(line[2:]) for line in out.splitlines() if line.startswith("$ ")]


def test_tpu_vm_dry_run(no_subprocess, capsys):
    rc = tpu_vm.main(["--name", "rec-v4", "--zone", "us-central2-b", "--project", "my-proj",
                      "--accelerator_type", "v4-32", "--spot", "--copy", "data/beauty",
                      "--copy", "/ckpts/flan_t5_xl:checkpoints/flan_t5_xl", "--dry_run", "--", *TRAIN_ARGS])
    out = capsys.readouterr().out
    assert rc == 0
    gcloud = ["gcloud", "compute", "tpus", "tpu-vm"]
    where = ["--zone=us-central2-b", "--project=my-proj"]
    tarball = tpu_vm.tarball_path("rec-v4")
    train = ("cd recjax && export PATH=\"$HOME/.local/bin:$PATH\" && recjax train --multihost "
             "--gin_file=gin/experiments/beauty_xl_rec_aux.gin "
             + shlex.quote("--gin.INITIAL_CHECKPOINT_PATH='checkpoints/flan t5 xl'"))
    assert _commands(out) == [
        gcloud + ["describe", "rec-v4", "--format=value(state)"] + where,
        gcloud + ["create", "rec-v4", "--accelerator-type=v4-32", "--version=tpu-ubuntu2204-base", "--spot"] + where,
        ["tar", "-czf", tarball, "--exclude=./.git", "--exclude=./.venv", "--exclude=./data", "--exclude=./runs",
         "--exclude=./outputs", "--exclude=__pycache__", "--exclude=.pytest_cache", "--exclude=*.tar.gz",
         "-C", REPO_ROOT, "."],
        gcloud + ["scp", tarball, "rec-v4:recjax.tar.gz", "--worker=all"] + where,
        gcloud + ["ssh", "rec-v4", "--worker=all", "--command=mkdir -p recjax && tar -xzf recjax.tar.gz -C recjax "
                  "&& python3 -m pip install -q -e './recjax[tpu]'"] + where,
        gcloud + ["ssh", "rec-v4", "--worker=all", "--command=mkdir -p recjax/checkpoints recjax/data"] + where,
        gcloud + ["scp", "--recurse", "data/beauty", "rec-v4:recjax/data/beauty", "--worker=all"] + where,
        gcloud + ["scp", "--recurse", "/ckpts/flan_t5_xl", "rec-v4:recjax/checkpoints/flan_t5_xl",
                  "--worker=all"] + where,
        gcloud + ["ssh", "rec-v4", "--worker=all", f"--command={train}"] + where,
    ]
    # The command each worker's shell gets runs recjax train with the arguments intact.
    assert shlex.split(train.split(" && ")[-1]) == ["recjax", "train", "--multihost", *TRAIN_ARGS]


def test_tpu_vm_git_clone_reuse_and_detach(no_subprocess, capsys):
    rc = tpu_vm.main(["--name", "t", "--zone", "z", "--repo_url", "https://example.org/recjax.git", "--ref", "v0.1",
                      "--detach", "train.log", "--dry_run", "--", "--gin_file=gin/experiments/toys_base_rec.gin"])
    out = capsys.readouterr().out
    assert rc == 0
    commands = _commands(out)
    assert commands[1][4] == "ssh"  # no accelerator type given: nothing to create from, describe then install
    assert commands[1][-2] == ("--command=if [ -d recjax/.git ]; then git -C recjax fetch -q --tags origin; "
                               "else git clone -q https://example.org/recjax.git recjax; fi && "
                               "git -C recjax checkout -q v0.1 && python3 -m pip install -q -e './recjax[tpu]'")
    assert commands[-1][-2] == ('--command=cd recjax && export PATH="$HOME/.local/bin:$PATH" && nohup recjax train '
                                '--multihost --gin_file=gin/experiments/toys_base_rec.gin > train.log 2>&1 '
                                '< /dev/null &')
    assert not any(c[0] == "tar" for c in commands)


def test_tpu_vm_errors(no_subprocess, capsys):
    assert tpu_vm.main(["--name", "t", "--zone", "z", "--dry_run"]) == 1
    assert "--gin_file" in capsys.readouterr().err
    assert tpu_vm.main(["--name", "t", "--zone", "z", "--copy", "/abs/path", "--dry_run", "--", *TRAIN_ARGS]) == 1
    assert "REMOTE must be a path inside the remote checkout" in capsys.readouterr().err


def _slurm_args(tmp_path, *extra):
    return ["--nodes", "2", "--gpus_per_node", "8", "--partition", "gpu", "--account", "rec", "--time", "12:00:00",
            "--venv", ".venv", "--setup", "module load cuda/12.4", "--script", str(tmp_path / "job.sbatch"),
            "--log_dir", str(tmp_path / "logs"), *extra, "--", *TRAIN_ARGS]


def test_slurm_dry_run_prints_script_and_sbatch(no_subprocess, tmp_path, capsys):
    rc = slurm.main(_slurm_args(tmp_path, "--dry_run"))
    out = capsys.readouterr().out
    assert rc == 0
    script_path = str(tmp_path / "job.sbatch")
    train = shlex.join(["recjax", "train", "--multihost", *TRAIN_ARGS])
    expected_script = textwrap.dedent(f"""\
        #!/bin/bash
        #SBATCH --job-name=recjax
        #SBATCH --nodes=2
        #SBATCH --ntasks-per-node=1
        #SBATCH --gpus-per-node=8
        #SBATCH --time=12:00:00
        #SBATCH --output={tmp_path}/logs/%x-%j.out
        #SBATCH --partition=gpu
        #SBATCH --account=rec
        # Written by launch/slurm.py: one recjax process per node, each using all of its node's GPUs.
        set -euo pipefail
        cd {REPO_ROOT}
        source {REPO_ROOT}/.venv/bin/activate
        module load cuda/12.4
        # recjax.multihost reads these; the process id is set per task below.
        COORDINATOR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | sed -n 1p)"
        export RECJAX_COORDINATOR_ADDRESS="$COORDINATOR:12345"
        export RECJAX_NUM_PROCESSES="$SLURM_NNODES"
        TRAIN=({train})
        srun --nodes=2 --ntasks-per-node=1 --kill-on-bad-exit=1 \\
          bash -c 'export RECJAX_PROCESS_ID="$SLURM_PROCID"; exec "$@"' recjax-task "${{TRAIN[@]}}"
        """)
    assert expected_script in out
    assert _commands(out) == [["sbatch", script_path]]
    assert not os.path.exists(script_path)  # a dry run writes nothing
    # --install puts setup.py's CUDA extra into the environment before training.
    installed = slurm.main(_slurm_args(tmp_path, "--dry_run", "--install"))
    out = capsys.readouterr().out
    assert installed == 0 and "module load cuda/12.4\npython3 -m pip install -q -e '.[cuda]'\n" in out


def test_slurm_script_gives_each_task_the_multihost_environment(tmp_path, capsys, monkeypatch):
    """Runs the written script under bash with stand-ins for scontrol, srun and recjax: every task
    gets the coordinator (first node), the process count and its own SLURM_PROCID as process id,
    and the train arguments arrive intact."""
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: subprocess.CompletedProcess(cmd, 0))  # no sbatch
    assert slurm.main(_slurm_args(tmp_path)) == 0
    capsys.readouterr()
    script = (tmp_path / "job.sbatch").read_text()
    monkeypatch.undo()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fakes = {
        # A long node list: the script must read all of it (no SIGPIPE under `set -o pipefail`).
        "scontrol": 'printf "gpu-node-07\\ngpu-node-08\\n"; for i in $(seq 1000); do echo "gpu-node-x$i"; done',
        # One task per node: run the command once per node with that task's SLURM_PROCID.
        "srun": 'shift 3; for i in 0 1; do SLURM_PROCID=$i "$@"; done',
        "recjax": 'out="$RECORD.$RECJAX_PROCESS_ID"; '
                  'echo "$RECJAX_COORDINATOR_ADDRESS $RECJAX_NUM_PROCESSES $RECJAX_PROCESS_ID" > "$out"; '
                  'for a in "$@"; do echo "$a" >> "$out"; done',
    }
    for name, body in fakes.items():
        (bin_dir / name).write_text(f"#!/bin/bash\n{body}\n")
        (bin_dir / name).chmod(0o755)
    (tmp_path / "venv" / "bin").mkdir(parents=True)
    (tmp_path / "venv" / "bin" / "activate").write_text("")
    script = script.replace(f"source {REPO_ROOT}/.venv/bin/activate", f"source {tmp_path}/venv/bin/activate")
    script = script.replace("module load cuda/12.4", "true")
    (tmp_path / "run.sh").write_text(script)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", SLURM_JOB_NODELIST="gpu-node-[07-08]",
               SLURM_NNODES="2", RECORD=str(tmp_path / "record"))
    subprocess.run(["bash", str(tmp_path / "run.sh")], env=env, check=True)
    for rank in (0, 1):
        lines = (tmp_path / f"record.{rank}").read_text().splitlines()
        assert lines[0] == f"gpu-node-07:12345 2 {rank}"
        assert lines[1:] == ["train", "--multihost", *TRAIN_ARGS]


def test_slurm_errors(no_subprocess, tmp_path, capsys):
    assert slurm.main(["--nodes", "0", "--gpus_per_node", "8", "--dry_run", "--", *TRAIN_ARGS]) == 1
    assert "--nodes and --gpus_per_node must be >= 1" in capsys.readouterr().err


def test_local_dry_run(no_subprocess, capsys):
    rc = local.main(["--num_processes", "3", "--devices_per_process", "2", "--port", "43210", "--dry_run", "--",
                     *TRAIN_ARGS])
    out = capsys.readouterr().out
    assert rc == 0
    assert _commands(out) == [
        ["env", "JAX_PLATFORMS=cpu", "XLA_FLAGS=--xla_force_host_platform_device_count=2", sys.executable, "-m",
         "recjax.cli", "train", "--coordinator_address=localhost:43210", "--num_processes=3", f"--process_id={i}",
         *TRAIN_ARGS]
        for i in range(3)]


def test_train_flags_required(no_subprocess, capsys):
    assert local.main(["--dry_run"]) == 1
    assert "no `recjax train` flags after `--`" in capsys.readouterr().err
    with pytest.raises(common.LaunchError):
        common.train_command(["--gin.X=1"], multihost=True)


def test_tpu_vm_install_updates_an_existing_checkout_in_place(tmp_path):
    """The workers' fetch command, run here against a local repository: the first run clones, a
    relaunch checks out the new ref and leaves the run directory (checkpoints) alone."""
    origin = tmp_path / "origin"
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(origin)]
    subprocess.run(["git", "init", "-q", str(origin)], check=True)
    (origin / "a.txt").write_text("v1\n")
    subprocess.run(git + ["add", "a.txt"], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "v1"], check=True)
    subprocess.run(git + ["tag", "v1"], check=True)
    worker = tmp_path / "worker"  # a worker's home directory
    worker.mkdir()

    def fetch(ref):
        command = tpu_vm.install_command("jax[tpu]", str(origin), ref)
        command = command[: command.index(" && python3 -m pip")]  # everything but the pip install
        subprocess.run(["bash", "-c", command], cwd=worker, check=True, capture_output=True)

    fetch("v1")
    assert (worker / "recjax" / "a.txt").read_text() == "v1\n"
    (worker / "recjax" / "runs").mkdir()
    (worker / "recjax" / "runs" / "checkpoint").write_text("keep me")
    (origin / "a.txt").write_text("v2\n")
    subprocess.run(git + ["commit", "-q", "-am", "v2"], check=True)
    subprocess.run(git + ["tag", "v2"], check=True)
    fetch("v2")
    assert (worker / "recjax" / "a.txt").read_text() == "v2\n"
    assert (worker / "recjax" / "runs" / "checkpoint").read_text() == "keep me"

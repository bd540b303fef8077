"""run_script: a user's mistake is one sentence, and a process leaves its torch.distributed group on the way out."""

import pytest
import torch.distributed as dist

from pdiff_hub.core.cli import EXIT_USAGE, UsageError, run_script


def _join_group(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    assert dist.is_initialized()


def test_a_script_leaves_its_process_group_when_it_ends(tmp_path):
    assert run_script(lambda args: (_join_group(tmp_path), args)[1], lambda argv: "parsed", []) == "parsed"
    assert not dist.is_initialized()


def test_a_script_leaves_its_process_group_after_a_users_mistake(tmp_path, capsys):
    def main(args):
        _join_group(tmp_path)
        raise UsageError("--output_dir is wrong; give another")

    with pytest.raises(SystemExit) as stop:
        run_script(main, lambda argv: None, [])
    assert stop.value.code == EXIT_USAGE and not dist.is_initialized()
    assert capsys.readouterr().err == "error: --output_dir is wrong; give another\n"

"""aurl.progress: a bar on a terminal only; elsewhere a plain line each tenth or 30 s, with no carriage return."""

import io

from aurl.data.prepare import prepare
from aurl.progress import Progress, draws_bar, message_writer
from aurl.training.logger import Reporter


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_bar_only_where_the_stream_is_a_terminal():
    assert draws_bar(True, Terminal()) and not draws_bar(False, Terminal())
    assert not draws_bar(True, io.StringIO())
    lines: list[str] = []
    assert message_writer(True, lines.append, io.StringIO()) == lines.append
    terminal = Terminal()
    with Progress(5, "work", "file", lines.append, stream=terminal) as bar:
        for _ in range(5):
            bar.update()
    assert "\r" in terminal.getvalue() and "5/5" in terminal.getvalue() and not lines


def test_without_a_terminal_a_line_each_tenth_or_30_seconds_and_none_with_a_carriage_return():
    lines: list[str] = []
    stream, clock = io.StringIO(), Clock()
    with Progress(200, "train", "step", lines.append, stream=stream, clock=clock, brief=("loss",)) as progress:
        for step in range(1, 201):
            clock.now += 0.1 if step <= 100 else 1.0  # the second half: 20 steps take 20 s, 30 s pass mid-tenth
            progress.show({"loss": f"{1 / step:.4g}", "lr": "0.001"})
            progress.update()
    assert stream.getvalue() == ""  # no bar drawn
    assert not any("\r" in line or "\n" in line for line in lines)
    counts = [int(line.split(" ")[1].split("/")[0]) for line in lines]
    assert counts == [20, 40, 60, 80, 100, 120, 140, 160, 180, 200]  # 20 s between lines: the tenths came first
    assert lines[0] == "train: 20/200 steps (10%), 00:02 elapsed, 10 steps/s, ~00:18 left; loss=0.05 lr=0.001"
    assert lines[-1].startswith("train: 200/200 steps (100%)") and "left" not in lines[-1]

    slow: list[str] = []
    with Progress(1000, "prepare", "file", slow.append, progress=False, clock=clock) as progress:
        for _ in range(50):  # 50 files in 100 s: far from a tenth, a line every 30 s, and one at the end
            clock.now += 2.0
            progress.update()
    assert [line.split(" ")[1] for line in slow] == ["15/1000", "30/1000", "45/1000", "50/1000"]
    assert slow[-1] == "prepare: 50/1000 files (5%), 01:40 elapsed, 0.5 files/s, ~31:40 left"


def test_under_a_time_budget_the_budget_sets_the_share_done_and_the_time_left():
    lines: list[str] = []
    clock = Clock()
    budget = 100.0  # seconds; max_steps far away, as configs/base.yaml has it

    def spent() -> float:
        return clock.now / budget

    with Progress(1_000_000, "train", "step", lines.append, progress=False, clock=clock, spent=spent) as progress:
        while spent() < 1:
            clock.now += 1.0
            progress.update()
    assert len(lines) == 10  # a line each tenth of the budget (each 10 s here), none left over
    assert lines[0] == "train: 10/1000000 steps (10%), 00:10 elapsed, 1 steps/s, ~01:30 left"
    assert lines[-1].startswith("train: 100/1000000 steps (100%)") and "left" not in lines[-1]


def test_reporter_lines_show_the_figures_of_their_own_step(tmp_path, monkeypatch):
    monkeypatch.setattr("sys.stderr", io.StringIO())  # no terminal, however pytest was started
    lines: list[str] = []
    with Reporter(tmp_path, 0, 20, main=False, progress=True, log=lines.append) as report:
        for step in range(1, 21):
            report.step({"loss": float(step)})
            if step % 2 == 0:
                report.train(step, {k: 1.0 for k in Reporter.LINE if k != "loss"})
    assert [line.split(",")[0] for line in lines] == [f"train: {n}/20 steps ({n * 5}%)" for n in range(2, 21, 2)]
    assert "loss=1.5" in lines[0] and "loss=19.5" in lines[-1]  # the mean of steps 1-2, of steps 19-20

    lines.clear()  # a run that ends early (a time budget): its last line comes before its last evaluation's
    with Reporter(tmp_path, 0, 100, main=False, progress=True, log=lines.append) as report:
        for _ in range(7):
            report.step({"loss": 1.0})
        report.train(7, {k: 1.0 for k in Reporter.LINE if k != "loss"}, final=True)
        report.valid(7, {"loss": 2.0}, "step 7")
    assert [line.split(",")[0] for line in lines] == ["train: 7/100 steps (7%)", "step 7: valid loss 2.0000"]


def test_prepare_without_a_terminal_logs_plain_lines(midi_dir, tiny_config, tmp_path, monkeypatch):
    stderr = io.StringIO()
    monkeypatch.setattr("sys.stderr", stderr)
    lines: list[str] = []
    prepare(str(midi_dir), tmp_path, tiny_config, log=lines.append)
    assert [line.split(",")[0] for line in lines] == [f"prepare: {n}/10 files ({n}0%)" for n in range(1, 11)]
    assert stderr.getvalue() == ""

"""The bad-input table: user mistakes across the CLI and the Python API.

On the command line each gives one line ``earlyprune: error: …`` on stderr, exit code 2 and no
traceback; in Python, a ``ValueError`` subclass (``SpecError``, ``DatasetError``, ``StoreError``)
or ``ValueError`` itself, with the same clear message. Neither form writes anything: the test
folder (store, data, sweep files) is byte-identical afterwards. the README's Troubleshooting table
documents every row; a test keeps the two in step.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

import earlyprune as ep
from earlyprune import cli
from earlyprune.core.errors import DatasetError, SpecError, StoreError
from earlyprune.run.spec import RunSpec
from earlyprune.run.store import RunStore

DOC = Path(__file__).resolve().parents[1] / "README.md"  # its "Troubleshooting" table
RUN = (
    "run",
    "--dataset",
    "fashion-mnist-mini",
    "--method",
    "snip",
    "--sparsity",
    "0.9",
    "--epochs",
    "0.25",
    "--store",
    "{store}",
)
SWEEP = ("sweep", "run", "{tmp}/sweep.toml", "--store", "{store}", "--workers", "1")
GOOD_SWEEP = '[base]\ndataset = "fashion-mnist-mini"\nepochs = 0.25\n[axes]\nseed = [0]\n'


@dataclass(frozen=True)
class Mistake:
    """One row: the mistake, a fragment of its message, its CLI and its Python form."""

    what: str
    says: str
    argv: tuple[str, ...] = ()  # "{tmp}" and "{store}" are filled in
    api: Callable[[Path], object] | None = None
    error: type[ValueError] = SpecError
    setup: Callable[[Path], None] | None = None


def with_option(option: str, value: str) -> tuple[str, ...]:
    """RUN with ``option`` set to ``value`` (replaced if RUN has it)."""
    argv = list(RUN)
    if option in argv:
        argv[argv.index(option) + 1] = value
    else:
        argv += [option, value]
    return tuple(argv)


def sweep_file(text: str) -> Callable[[Path], None]:
    return lambda tmp: (tmp / "sweep.toml").write_text(text, encoding="utf-8")  # type: ignore[func-returns-value]


def a_file(tmp: Path) -> None:
    (tmp / "file").write_text("my notes", encoding="utf-8")


def corrupt_mnist(tmp: Path) -> None:
    folder = tmp / "data" / "mnist"
    folder.mkdir(parents=True)
    for prefix, n in (("train", 12), ("t10k", 6)):
        shape = b"".join(d.to_bytes(4, "big") for d in (n, 28, 28))
        (folder / f"{prefix}-images-idx3-ubyte").write_bytes(
            b"\0\0\x08\x03" + shape + bytes(n * 784)
        )
        (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(
            b"\0\0\x08\x01" + n.to_bytes(4, "big") + bytes(n)
        )
    images = folder / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:1000])  # a download cut short


def a_module_without_the_function(tmp: Path) -> None:
    (tmp / "my_method.py").write_text("def other(model, batch):\n    return {}\n")


def symlink_loop(tmp: Path) -> None:
    (tmp / "loop").symlink_to(tmp / "loop")


def cifar_with_float_labels(tmp: Path) -> None:
    import pickle

    import numpy as np

    folder = tmp / "data" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        batch = {b"data": np.zeros((4, 3072), np.uint8), b"labels": [0.0, 3.7, 1.0, 2.5]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))


def prune_batch(
    x: torch.Tensor, y: torch.Tensor, dtype: torch.dtype = torch.float32
) -> Callable[[Path], object]:
    def call(_tmp: Path) -> object:
        model = ep.create_model("smallcnn", 10).to(dtype)
        return ep.prune(model, "snip", 0.5, batch=(x, y))

    return call


X28, Y20 = torch.randn(20, 1, 28, 28), torch.arange(20) % 10
NO_AXES = '[base]\ndataset = "fashion-mnist-mini"\nepochs = 0.25\nmethod = "snip"\n'


def model_and_batch() -> tuple[torch.nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    model = ep.create_model("smallcnn", 10)
    return model, (torch.randn(20, 1, 28, 28), torch.arange(20) % 10)


def prune(
    sparsity: object = 0.5, method: str = "snip", **options: object
) -> Callable[[Path], object]:
    def call(_tmp: Path) -> object:
        model, batch = model_and_batch()
        return ep.prune(model, method, sparsity, batch=batch, **options)  # type: ignore[arg-type]

    return call


def run_spec(**fields: object) -> Callable[[Path], object]:
    from earlyprune.run.pipeline import run

    return lambda tmp: run(RunSpec(**fields), RunStore(tmp / "store"), progress=False)


def load_sweep(tmp: Path) -> object:
    from earlyprune.sweeps.grid import load_sweep as load

    return load(tmp / "sweep.toml")


def sweep_run(workers: object = 1, backend: str = "local") -> Callable[[Path], object]:
    from earlyprune.sweeps.grid import run_specs

    specs = [RunSpec(epochs=0.25)]
    return lambda tmp: run_specs(specs, RunStore(tmp / "store"), workers=workers, backend=backend)  # type: ignore[arg-type]


def check_method(target: str) -> Callable[[Path], object]:
    def call(tmp: Path) -> object:
        from earlyprune.apps.check_method import check_method

        return check_method(target.format(tmp=tmp), tmp / "store", tmp / "out")

    return call


def load_results(tmp: Path) -> object:
    from earlyprune.analysis import load_results as load

    return load(tmp / "nowhere")


def wrong_mask(_tmp: Path) -> None:
    model, _ = model_and_batch()
    ep.apply_mask(model, {"features.weight": torch.ones(3, dtype=torch.bool)})


def float_mask(_tmp: Path) -> None:
    model, _ = model_and_batch()
    ep.apply_mask(model, {n: torch.full(p.shape, 0.3) for n, p in ep.prunable(model).items()})


def weights_as_mask(tmp: Path) -> object:
    model, _ = model_and_batch()
    torch.save(model.state_dict(), tmp / "checkpoint.pt")
    return ep.load_mask(tmp / "checkpoint.pt")


def stale_result(tmp: Path) -> None:
    """What an earlyprune before numerics versions stored for RUN's spec."""
    spec = RunSpec(method="snip", sparsity=0.9, epochs=0.25)
    folder = tmp / "store" / spec.run_id
    folder.mkdir(parents=True)
    record = {"run_id": spec.run_id, "spec": spec.to_dict(), "status": "ok", "test_accuracy": 0.5}
    (folder / "result.json").write_text(json.dumps(record), encoding="utf-8")


def not_a_mask(tmp: Path) -> object:
    torch.save({"step": 3}, tmp / "checkpoint.pt")
    return ep.load_mask(tmp / "checkpoint.pt")


MISTAKES = [
    Mistake(
        "unknown model",
        "unknown model 'resnet1000'; choose one of: resnet20",
        with_option("--model", "resnet1000"),
        run_spec(model="resnet1000"),
    ),
    Mistake(
        "unknown dataset",
        "unknown dataset 'cifar11'; choose one of: cifar10",
        with_option("--dataset", "cifar11"),
        lambda _: ep.load_dataset("cifar11"),
        DatasetError,
    ),
    Mistake(
        "unknown method",
        "unknown method 'sniip'",
        with_option("--method", "sniip"),
        prune(method="sniip"),
        ValueError,
    ),
    Mistake(
        "unknown ablation",
        "unknown ablation 'flip'; choose one of: none, shuffle",
        with_option("--ablation", "flip"),
        run_spec(method="snip", sparsity=0.5, ablation="flip"),
    ),
    Mistake(
        "unknown preset",
        "unknown preset 'nope'; choose one of: resnet20_cifar10",
        with_option("--preset", "nope"),
        run_spec(preset="nope"),
    ),
    Mistake(
        "unknown pruning scope",
        "unknown scope 'local'; choose one of: global, layer",
        with_option("--scope", "local"),
        prune(scope="local"),
        ValueError,
    ),
    Mistake(
        "sparsity -0.1", "got -0.1", with_option("--sparsity", "-0.1"), prune(-0.1), ValueError
    ),
    Mistake(
        "sparsity 1.0",
        "sparsity must be a number in [0, 1), got 1.0",
        with_option("--sparsity", "1.0"),
        run_spec(method="snip", sparsity=1.0),
    ),
    Mistake(
        "sparsity abc",
        "sparsity must be a number in [0, 1), got 'abc'",
        with_option("--sparsity", "abc"),
        prune("abc"),
        ValueError,
    ),
    Mistake(
        "dense with a sparsity",
        "method 'dense' trains the unpruned network",
        with_option("--method", "dense"),
        run_spec(method="dense", sparsity=0.9),
    ),
    Mistake(
        "prune step beyond training",
        "prune step 100000 is beyond training",
        with_option("--prune-step", "100000"),
        run_spec(method="snip", sparsity=0.9, epochs=0.25, prune_step=100000),
    ),
    Mistake(
        "rounds 0", "rounds must be", with_option("--rounds", "0"), prune(rounds=0), ValueError
    ),
    Mistake(
        "epochs 0",
        "epochs must be a positive number, got 0",
        with_option("--epochs", "0"),
        run_spec(epochs=0),
    ),
    Mistake(
        "negative seed",
        "seed must be an integer ≥ 0, got -1",
        with_option("--seed", "-1"),
        run_spec(seed=-1),
    ),
    Mistake(
        "no such GPU",
        "cuda:99",
        with_option("--device", "cuda:99"),
        run_spec(method="snip", sparsity=0.9, epochs=0.25, device="cuda:99"),
    ),
    Mistake(
        "seeds empty",
        "axis 'seed' is empty",
        SWEEP,
        load_sweep,
        setup=sweep_file(GOOD_SWEEP.replace("[0]", "[]")),
    ),
    Mistake(
        "TOML syntax error",
        "invalid TOML",
        SWEEP,
        load_sweep,
        setup=sweep_file(GOOD_SWEEP.replace("[axes]", "[axes")),
    ),
    Mistake(
        "TOML with an unknown field",
        "unknown run field(s) 'sparsty'",
        SWEEP,
        load_sweep,
        setup=sweep_file(GOOD_SWEEP + "sparsty = [0.5]\n"),
    ),
    Mistake(
        "TOML with an unknown section",
        "unknown key(s) axis",
        SWEEP,
        load_sweep,
        setup=sweep_file(GOOD_SWEEP.replace("[axes]", "[axis]")),
    ),
    Mistake("sweep file missing", "not found", SWEEP, load_sweep),
    Mistake(
        "unknown executor",
        "unknown executor 'kubernetes'; choose one of: local, ray, slurm",
        (*SWEEP, "--backend", "kubernetes"),
        sweep_run(backend="kubernetes"),
        ValueError,
        setup=sweep_file(GOOD_SWEEP),
    ),
    Mistake(
        "workers 0",
        "workers must be a positive integer, got 0",
        (*SWEEP[:-1], "0"),
        sweep_run(workers=0),
        setup=sweep_file(GOOD_SWEEP),
    ),
    Mistake(
        "dataset folder missing",
        "mnist IDX files not found (looked in: ",
        (
            "run",
            "--dataset",
            "mnist",
            "--method",
            "snip",
            "--sparsity",
            "0.5",
            "--data-root",
            "{tmp}/nowhere",
            "--store",
            "{store}",
        ),
        lambda tmp: ep.load_dataset("mnist", root=tmp / "nowhere"),
        DatasetError,
    ),
    Mistake(
        "corrupt dataset file",
        "train-images-idx3-ubyte",
        (
            "run",
            "--dataset",
            "mnist",
            "--method",
            "snip",
            "--sparsity",
            "0.5",
            "--data-root",
            "{tmp}/data",
            "--store",
            "{store}",
        ),
        lambda tmp: ep.load_dataset("mnist", root=tmp / "data"),
        DatasetError,
        corrupt_mnist,
    ),
    Mistake(
        "mask with wrong keys",
        "mask does not match the model's prunable weights",
        api=wrong_mask,
        error=ValueError,
    ),
    Mistake(
        "mask file that is not a mask", "does not hold a mask", api=not_a_mask, error=ValueError
    ),
    Mistake(
        "float mask",
        "is float32, not bool: masks are bool tensors",
        api=float_mask,
        error=ValueError,
    ),
    Mistake(
        "mask file of float weights", "does not hold a mask", api=weights_as_mask, error=ValueError
    ),
    Mistake(
        "mask that keeps no weight",
        "the mask keeps none of the 106,000 weights",
        with_option("--sparsity", "0.999999"),
        run_spec(method="magnitude", sparsity=0.999999, epochs=0.25, device="cpu"),
    ),
    Mistake(
        "empty layer that cuts every path",
        "no path from input to output: layer(s) conv1.weight",
        (*with_option("--sparsity", "0.9999"), "--scope", "layer"),
        prune(0.9999, "magnitude", scope="layer"),
        error=ValueError,
    ),
    Mistake(
        "result stored by an older earlyprune",
        "older earlyprune (numerics version 1",
        RUN,
        run_spec(method="snip", sparsity=0.9, epochs=0.25),
        setup=stale_result,
    ),
    Mistake(
        "store path that is a file",
        "exists and is not a folder",
        with_option("--store", "{tmp}/file"),
        lambda tmp: RunStore(tmp / "file"),
        StoreError,
        a_file,
    ),
    Mistake(
        "report of a store that does not exist",
        "does not exist",
        ("report", "{tmp}/nowhere"),
        load_results,
        StoreError,
    ),
    Mistake(
        "check-method module missing",
        "cannot import module 'no_such_module_xyz'",
        ("check-method", "no_such_module_xyz:score", "--store", "{store}", "--out", "{tmp}/out"),
        check_method("no_such_module_xyz:score"),
    ),
    Mistake(
        "check-method file missing",
        "no such file: ",
        ("check-method", "{tmp}/nope.py:score", "--store", "{store}", "--out", "{tmp}/out"),
        check_method("{tmp}/nope.py:score"),
    ),
    Mistake(
        "check-method function missing",
        "has no function 'score' (functions found: other)",
        ("check-method", "{tmp}/my_method.py:score", "--store", "{store}", "--out", "{tmp}/out"),
        check_method("{tmp}/my_method.py:score"),
        setup=a_module_without_the_function,
    ),
    # issue 12: environment, identity and the held-out bad inputs
    Mistake(
        "unusable device",
        "cannot run earlyprune; use 'auto', 'cpu'",
        with_option("--device", "mps"),
        run_spec(method="snip", sparsity=0.9, device="meta"),
    ),
    Mistake(
        "seed 2**63 or more",
        "seed must be below 2**63",
        with_option("--seed", str(2**63)),
        run_spec(seed=2**63),
    ),
    Mistake(
        "rounds on a method that prunes once",
        "rounds does nothing for method 'ltr'",
        (*with_option("--method", "ltr"), "--rounds", "3"),
        run_spec(method="ltr", sparsity=0.9, rounds=3),
    ),
    Mistake(
        "rounds 100000",
        "rounds 100000 is more than 1000",
        with_option("--rounds", "100000"),
        run_spec(method="snip", sparsity=0.9, rounds=100000),
    ),
    Mistake(
        "LTR rewind step beyond training",
        "the preset's rewind step 20 (ltr's default",
        with_option("--method", "ltr"),
        run_spec(method="ltr", sparsity=0.9, epochs=0.25),
    ),
    Mistake(
        "store path empty",
        "store path is empty",
        with_option("--store", ""),
        lambda _: RunStore(""),
        StoreError,
    ),
    Mistake(
        "store path a symlink loop",
        "is a symbolic link loop",
        with_option("--store", "{tmp}/loop"),
        lambda tmp: RunStore(tmp / "loop"),
        StoreError,
        symlink_loop,
    ),
    Mistake(
        "store path too long",
        "store path is too long",
        with_option("--store", "{tmp}/" + "x" * 300),
        lambda tmp: RunStore(tmp / ("x" * 300)),
        StoreError,
    ),
    Mistake(
        "CIFAR batch with float labels",
        "must hold integer class labels",
        (
            "run",
            "--dataset",
            "cifar10",
            "--method",
            "snip",
            "--sparsity",
            "0.5",
            "--data-root",
            "{tmp}/data",
            "--store",
            "{store}",
        ),
        lambda tmp: ep.load_dataset("cifar10", root=tmp / "data"),
        DatasetError,
        cifar_with_float_labels,
    ),
    Mistake(
        "sweep without axes, bad base",
        "is the dense run: use 'dense' (in [base])",
        SWEEP,
        load_sweep,
        setup=sweep_file(NO_AXES),
    ),
    Mistake(
        "batch of another dtype",
        "batch inputs are torch.float32 but the model's weights are torch.float64",
        api=prune_batch(X28, Y20, torch.float64),
        error=ValueError,
    ),
    Mistake(
        "batch of another image shape",
        "the model cannot take inputs of shape (3, 32, 32)",
        api=prune_batch(torch.randn(20, 3, 32, 32), Y20),
        error=ValueError,
    ),
    Mistake(
        "float labels",
        "batch labels must be class indices, an integer tensor of shape (N,)",
        api=prune_batch(X28, Y20.float()),
        error=ValueError,
    ),
    Mistake(
        "one-hot labels",
        "one-hot? pass labels.argmax(1)",
        api=prune_batch(X28, torch.nn.functional.one_hot(Y20, 10)),
        error=ValueError,
    ),
]


def ids(rows: list[Mistake]) -> list[str]:
    return [m.what for m in rows]


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every file (content) and folder (None) under ``folder``."""
    return {
        str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(folder.rglob("*"))
    }


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_the_table_is_long_enough_and_covers_both_interfaces() -> None:
    assert len(MISTAKES) >= 20 and len(set(ids(MISTAKES))) == len(MISTAKES)
    assert sum(bool(m.argv) for m in MISTAKES) >= 20 and sum(bool(m.api) for m in MISTAKES) >= 20


CLI_ROWS = [m for m in MISTAKES if m.argv]


@pytest.mark.parametrize("mistake", CLI_ROWS, ids=ids(CLI_ROWS))
def test_on_the_command_line_one_line_exit_2_nothing_written(
    mistake: Mistake, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if mistake.setup:
        mistake.setup(tmp_path)
    before = snapshot(tmp_path)
    argv = [a.format(tmp=tmp_path, store=tmp_path / "store") for a in mistake.argv]
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse mistakes exit from inside parse_args
        code = exc.code
    out, err = capsys.readouterr()
    assert code == 2, err
    assert out == "" and err.count("\n") == 1 and err.startswith("earlyprune: error: "), err
    assert mistake.says in err and "Traceback" not in err, err
    assert snapshot(tmp_path) == before


API_ROWS = [m for m in MISTAKES if m.api]


@pytest.mark.parametrize("mistake", API_ROWS, ids=ids(API_ROWS))
def test_in_python_a_typed_exception_with_the_message_nothing_written(
    mistake: Mistake, tmp_path: Path
) -> None:
    assert issubclass(mistake.error, ValueError)  # the contract: user mistakes are ValueErrors
    if mistake.setup:
        mistake.setup(tmp_path)
    before = {k: v for k, v in snapshot(tmp_path).items() if k != "checkpoint.pt"}
    with pytest.raises(mistake.error) as caught:
        mistake.api(tmp_path)  # type: ignore[misc]
    message = str(caught.value)
    assert mistake.says in message and "\n" not in message, message
    after = {k: v for k, v in snapshot(tmp_path).items() if k != "checkpoint.pt"}
    assert after == before


def test_every_row_is_documented_in_troubleshooting() -> None:
    doc = DOC.read_text(encoding="utf-8")
    rows = [line for line in doc.splitlines() if line.startswith("| ")]
    missing = [
        m.what for m in MISTAKES if not any(line.startswith(f"| {m.what} |") for line in rows)
    ]
    assert missing == []

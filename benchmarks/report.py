"""Turns the benchmarks' JSON into the headline numbers, a summary table and BENCHMARKS.md text."""

from __future__ import annotations

from typing import Any

Row = dict[str, Any]


def _get(results: dict[str, Any], *path: str) -> Any:
    node: Any = results
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def headline(results: dict[str, Any]) -> dict[str, Any]:
    """The five numbers the contract names, None where a benchmark did not run or failed."""
    return {
        "masked_over_dense": _get(results, "training", "masked_over_dense"),
        "defaults_over_naive": _get(results, "training", "defaults_over_naive"),
        "synflow_resnet20_s": _get(results, "scoring", "synflow_resnet20_s"),
        "synflow_vgg16_s": _get(results, "scoring", "synflow_vgg16_s"),
        "loader_over_train": _get(results, "loader", "loader_over_train"),
    }


def _row(label: str, value: Any, goal: str, ok: bool | None, bench: str, res: dict) -> Row:
    device = _get(res, bench, "device") or "-"
    return {"target": label, "measured": value, "goal": goal, "met": ok, "device": device}


def _at_least(v: Any, x: float) -> bool | None:
    return None if v is None else v >= x


def _at_most(v: Any, x: float) -> bool | None:
    return None if v is None else v <= x


def summary_rows(res: dict[str, Any]) -> list[Row]:
    """One row per target of the issue (and a few context rows with no goal)."""
    h = headline(res)
    sel = _get(res, "scoring", "selection") or {}
    vgg = _get(res, "scoring", "models", "vgg16") or {}
    share = vgg.get("synflow_share", {})
    mem = _get(res, "memory", "methods") or {}
    worst = max(mem.items(), key=lambda kv: kv[1]["working_copies"], default=(None, None))
    prec = _get(res, "precision", "networks") or {}
    rows = [
        _row(
            "1. masked (90 %) / dense training, ResNet-20",
            h["masked_over_dense"],
            "≥ 0.98",
            _at_least(h["masked_over_dense"], 0.98),
            "training",
            res,
        ),
        _row(
            "2. our defaults / plain fp32 loop",
            h["defaults_over_naive"],
            "≥ 1.25",
            _at_least(h["defaults_over_naive"], 1.25),
            "training",
            res,
        ),
        _row(
            "2. bf16 autocast + channels_last / plain loop",
            _get(res, "training", "bf16_over_naive"),
            "(opt-in)",
            None,
            "training",
            res,
        ),
    ]
    for net, v in prec.items():
        rows.append(
            _row(
                f"2. bf16 − fp32 test accuracy, {net} (fashion-mnist-mini)",
                v["bf16_minus_fp32"],
                "(report)",
                None,
                "precision",
                res,
            )
        )
    rows += [
        _row(
            "3. full sort / kthvalue, 14.7 M scores",
            sel.get("sort_over_kthvalue"),
            "select never sorts",
            None,
            "scoring",
            res,
        ),
        _row(
            "3. one round: straightforward select / ours (ms)",
            f"{sel.get('straightforward_select_ms')} / {sel.get('select_ms')}",
            "(report)",
            None,
            "scoring",
            res,
        ),
        _row(
            "3. SynFlow 100 rounds, ResNet-20 (s)",
            h["synflow_resnet20_s"],
            "≤ 1.5",
            _at_most(h["synflow_resnet20_s"], 1.5),
            "scoring",
            res,
        ),
        _row(
            "3. SynFlow 100 rounds, VGG-16 (s)",
            h["synflow_vgg16_s"],
            "≤ 10",
            _at_most(h["synflow_vgg16_s"], 10.0),
            "scoring",
            res,
        ),
        _row(
            "3. SynFlow VGG-16 time share: select / scorer / bare fwd+bwd",
            f"{share.get('select')} / {share.get('score')} / {share.get('bare_fwd_bwd')}",
            "(report)",
            None,
            "scoring",
            res,
        ),
        _row(
            "4. loader + augmentation / training images/s",
            h["loader_over_train"],
            "≥ 3",
            _at_least(h["loader_over_train"], 3.0),
            "loader",
            res,
        ),
        _row(
            f"5. scorer working memory beyond its scores, worst ({worst[0]}), copies",
            worst[1]["working_copies"] if worst[1] else None,
            "≤ 1",
            _at_most(worst[1]["working_copies"], 1.0) if worst[1] else None,
            "memory",
            res,
        ),
    ]
    rows += [
        _row(
            "6. RigL (ΔT = 100) / static masked training, ResNet-20",
            _get(res, "training", "rigl_over_static"),
            "≥ 0.95",
            _at_least(_get(res, "training", "rigl_over_static"), 0.95),
            "training",
            res,
        ),
        _row(
            "6. RigL updating every block of steps / static (measured)",
            _get(res, "training", "rigl_over_static_measured"),
            "(report)",
            None,
            "training",
            res,
        ),
    ]
    return rows


def _fmt(v: Any) -> str:
    return "-" if v is None else str(v)


def _mark(ok: bool | None) -> str:
    return {True: "yes", False: "**no**", None: ""}[ok]


def table_text(rows: list[Row]) -> str:
    """A plain-text table for the terminal."""
    width = max(len(r["target"]) for r in rows)
    lines = [f"{'target':{width}}  {'measured':>16}  {'goal':>18}  met"]
    for r in rows:
        met = {True: "yes", False: "NO", None: ""}[r["met"]]
        lines.append(f"{r['target']:{width}}  {_fmt(r['measured']):>16}  {r['goal']:>18}  {met}")
    return "\n".join(lines)


def render(res: dict[str, Any], rows: list[Row], stamp: dict[str, Any]) -> str:
    """The generated part of BENCHMARKS.md."""
    out = [
        f"Measured {stamp['date']} at commit `{stamp['commit']}` "
        f"(size: {stamp['size']}, Python {stamp['python']}).",
        "",
        "| target | measured | goal | met | device |",
        "|---|---|---|---|---|",
    ]
    out += [
        f"| {r['target']} | {_fmt(r['measured'])} | {r['goal']} | {_mark(r['met'])} | "
        f"{r['device']} |"
        for r in rows
    ]
    out += [
        "",
        "| benchmark | device | torch threads | load avg start → end | wall s |",
        "|---|---|---|---|---|",
    ]
    for name, r in res.items():
        if "error" in r:
            out.append(f"| {name} | failed: {r['error']} | | | {r.get('wall_s', '-')} |")
            continue
        out.append(
            f"| {name} | {r.get('device')} | {r.get('torch_threads')} | "
            f"{r.get('loadavg_start')} → {r.get('loadavg_end')} | {r.get('wall_s')} |"
        )
    out += _details(res)
    return "\n".join(out)


def _details(res: dict[str, Any]) -> list[str]:
    out: list[str] = []
    tr = res.get("training", {})
    if "images_per_s" in tr:
        out += [
            "",
            f"**Training** (ResNet-20, batch {tr['batch_size']}, images/s, median of "
            f"{tr['repetitions']} interleaved blocks of {tr['steps_per_block']} steps): "
            + ", ".join(f"{k} {v}" for k, v in tr["images_per_s"].items())
            + f"; per-repetition ratio range {tr['ratio_spread']}.",
        ]
    sc = res.get("scoring", {})
    for model, per in sc.get("models", {}).items():
        out += [
            "",
            f"**Scoring, {model}** ({per['prunable_weights']:,} prunable weights, to 90 %; "
            f"bare float64 SynFlow fwd+bwd {per['synflow_fwd_bwd_ms']} ms)",
            "",
            "| method | s | scorer s | select s | forward | backward | of which with graph |",
            "|---|---|---|---|---|---|---|",
        ]
        for m, v in per["methods"].items():
            out.append(
                f"| {m} | {v['seconds']} | {v['score_s']} | {v['select_s']} | "
                f"{v['forward_passes']} | {v['backward_passes']} | "
                f"{v['backward_with_graph']} |"
            )
        if "allocations" in per:
            al = per["allocations"]
            out.append(
                f"\nAllocation rules on {model} (ms): "
                + ", ".join(f"{k} {v}" for k, v in al["rule_ms"].items())
                + "; composed masks (s): "
                + ", ".join(f"{k} {v}" for k, v in al["composed_s"].items())
                + "."
            )
        if "straightforward_synflow_s" in per:
            out.append(
                f"\nStraightforward SynFlow (pre-optimization code path) on {model}: "
                f"{per['straightforward_synflow_s']} s."
            )
    if "selection" in sc:
        s = sc["selection"]
        out += [
            "",
            f"**Selection primitives** on {s['n_scores']:,} float64 scores (k = 2.3 %): "
            f"sort {s['sort_ms']} ms, kthvalue {s['kthvalue_ms']} ms, topk {s['topk_ms']} ms; "
            f"one round of `select` {s['select_ms']} ms vs a straightforward gather + "
            f"kthvalue + scatter {s['straightforward_select_ms']} ms.",
        ]
    mem = res.get("memory", {})
    if "methods" in mem:
        out += [
            "",
            f"**Memory** ({mem['model']}, input {mem['input']}, weights "
            f"{mem['weight_mib']} MiB, {mem['measure']}; multiples of the weight bytes)",
            "",
            "| method | scoring peak | of which scores | working copies | activations (est.) "
            "| whole prune peak |",
            "|---|---|---|---|---|---|",
        ]
        for m, v in mem["methods"].items():
            out.append(
                f"| {m} | {v['score_peak_over_weights']} | {v['scores_over_weights']} | "
                f"{v['working_copies']} | {v['activation_share_estimate']} | "
                f"{v['prune_peak_over_weights']} |"
            )
    lo = res.get("loader", {})
    if "loader_images_per_s" in lo:
        out += [
            "",
            f"**Data pipeline**: loader + augmentation {lo['loader_images_per_s']} "
            f"images/s, training {lo['train_images_per_s']} images/s.",
        ]
    pr = res.get("precision", {})
    for net, v in pr.get("networks", {}).items():
        accs = {p: [r["test_accuracy"] for r in runs] for p, runs in v["runs"].items()}
        out += [
            "",
            f"**bf16 vs fp32, {net}** (fashion-mnist-mini, demo preset, epochs "
            f"{v['epochs']}): test accuracy fp32 {accs['fp32']}, bf16 {accs['bf16']} "
            f"(mean difference {v['bf16_minus_fp32']:+}); run time fp32/bf16 "
            f"{v['fp32_over_bf16_time']}×.",
        ]
    return out

"""FSDP for any causal LM: the decoder block to wrap comes from the model's ``_no_split_modules``
(Llama, Phi, Qwen2, a LoRA-wrapped Llama), and per-task gradient dot products over FSDP2-sharded
gradients equal the unsharded ones.

This file is also the worker script: ``torchrun --nproc_per_node 2 tests/test_fsdp.py OUT`` builds,
on every rank, the same seeded tiny model of each architecture (:data:`ARCHS`) and the same two
batches, computes the two task gradients unsharded, sharded with :func:`unlearn.fsdp.shard_model`
and sharded by accelerate's own FSDP2 path (``fsdp2_prepare_model``, after
:func:`unlearn.fsdp.configure_accelerate_fsdp`, with a stand-in accelerator: accelerate refuses
FSDP on CPU), and writes what it saw to ``OUT/<arch>.rank<r>.json``. fully_shard itself runs on
CPU over gloo (torch 2.13).
"""
from __future__ import annotations

import copy
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as the torchrun worker
    sys.path.insert(0, str(ROOT))

from tests.test_distributed import torchrun  # noqa: E402

SIZE = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
        "num_key_value_heads": 2, "vocab_size": 64, "max_position_embeddings": 64}
# name -> (config class, model class, decoder block, extra config). Tied embeddings for Llama (the
# repo's tiny model) and Qwen2 (as Qwen2-0.5B), untied for Phi (LayerNorm, dense biases).
ARCHS = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", "LlamaDecoderLayer", {"tie_word_embeddings": True}),
    "phi": ("PhiConfig", "PhiForCausalLM", "PhiDecoderLayer", {"tie_word_embeddings": False}),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", "Qwen2DecoderLayer", {"tie_word_embeddings": True}),
    "llama_lora": ("LlamaConfig", "LlamaForCausalLM", "LlamaDecoderLayer", {"tie_word_embeddings": True}),
}
REL = 1e-5


def build(arch: str, seed: int = 0) -> torch.nn.Module:
    import transformers

    config_cls, model_cls, _, extra = ARCHS[arch]
    torch.manual_seed(seed)
    model = getattr(transformers, model_cls)(getattr(transformers, config_cls)(**SIZE, **extra))
    if arch.endswith("_lora"):
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0,
                                                 target_modules=["q_proj", "v_proj"]))
        torch.manual_seed(seed + 1)  # LoRA B starts at zero: make the adapters' gradients non-trivial
        with torch.no_grad():
            for n, p in model.named_parameters():
                if "lora_B" in n:
                    p.normal_(0, 0.1)
    return model.eval()  # no dropout: the copies compute the same function


def batches() -> list[dict[str, torch.Tensor]]:
    """Two fixed task batches (prompt tokens masked out of the loss in the first)."""
    g = torch.Generator().manual_seed(3)
    out = []
    for masked in (4, 0):
        ids = torch.randint(3, SIZE["vocab_size"], (2, 12), generator=g)
        labels = ids.clone()
        labels[:, :masked] = -100
        out.append({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels})
    return out


def task_gradients(model: torch.nn.Module) -> tuple[list[float], list[list[torch.Tensor]]]:
    """Each task's loss and gradient (over the trainable parameters), by separate backward passes."""
    params = [p for p in model.parameters() if p.requires_grad]
    losses, grads = [], []
    for batch in batches():
        for p in params:
            p.grad = None
        loss = model(**batch).loss
        loss.backward()
        losses.append(float(loss.detach()))
        grads.append([p.grad.detach().clone() for p in params])
    return losses, grads


def geometry(grads, reduce=None) -> list[float]:
    from unlearn.gradients import TaskGradients

    tg = TaskGradients({"a": grads[0], "b": grads[1]}, reduce=reduce)
    return [tg.dot("a", "a"), tg.dot("b", "b"), tg.dot("a", "b"), tg.norm("a"), tg.cos("a", "b")]


def fsdp_names(model) -> list[str]:
    from torch.distributed.fsdp import FSDPModule

    return sorted(n for n, m in model.named_modules() if isinstance(m, FSDPModule))


def check_case(arch: str) -> dict:
    """One architecture on this rank: unsharded vs shard_model vs accelerate's FSDP2 path."""
    import torch.distributed as dist
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin
    from accelerate.utils.fsdp_utils import fsdp2_prepare_model
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import FSDPModule
    from torch.distributed.tensor import DTensor, Shard

    from unlearn.fsdp import configure_accelerate_fsdp, layer_classes, shard_model

    def all_sum(x: torch.Tensor) -> torch.Tensor:
        y = x.detach().clone()
        dist.all_reduce(y, op=dist.ReduceOp.SUM)
        return y

    ref = build(arch)
    blocks = tuple(layer_classes(ref))
    sharded, via_acc = copy.deepcopy(ref), copy.deepcopy(ref)
    losses_ref, grads_ref = task_gradients(ref)
    seen: dict = {"losses_ref": losses_ref, "geometry_ref": geometry(grads_ref)}

    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    shard_model(sharded, mesh=mesh)
    losses, grads = task_gradients(sharded)
    params = [p for p in sharded.parameters()]
    seen.update(
        losses_sharded=losses, geometry_sharded=geometry(grads, reduce=all_sum),
        geometry_local=geometry(grads),  # this rank's shards only: NOT the global numbers
        blocks=[type(m).__name__ for m in sharded.modules() if isinstance(m, blocks)],
        blocks_fsdp=[isinstance(m, FSDPModule) for m in sharded.modules() if isinstance(m, blocks)],
        root_fsdp=isinstance(sharded, FSDPModule), fsdp_modules=fsdp_names(sharded),
        all_dtensor=all(isinstance(p, DTensor) for p in params),
        grads_dtensor=all(isinstance(g, DTensor) for g in grads[0]),
        mesh_sizes=sorted({p.device_mesh.size() for p in params}),
        placements=sorted({str(p.placements) for p in params}),
        local_numel=sum(p.to_local().numel() for p in params), full_numel=sum(p.numel() for p in params),
        max_grad_diff=max(float((g.full_tensor() - r).abs().max()) for gs, rs in zip(grads, grads_ref)
                          for g, r in zip(gs, rs)),
        tied_kept=None,
    )
    assert all(p.placements == (Shard(0),) for p in params)
    head, embed = sharded.get_output_embeddings(), sharded.get_input_embeddings()
    seen["tied_kept"] = head.weight is embed.weight

    # accelerate's FSDP2 path on the names configure_accelerate_fsdp sets
    plugin = FullyShardedDataParallelPlugin(fsdp_version=2, auto_wrap_policy="transformer_based_wrap",
                                            reshard_after_forward=True)
    stub = SimpleNamespace(distributed_type=DistributedType.FSDP, state=SimpleNamespace(fsdp_plugin=plugin),
                           torch_device_mesh=None, mixed_precision="no", is_main_process=dist.get_rank() == 0,
                           device=torch.device("cpu"))
    seen["configured"] = configure_accelerate_fsdp(stub, via_acc)
    fsdp2_prepare_model(stub, via_acc)
    losses_acc, grads_acc = task_gradients(via_acc)
    seen.update(losses_accelerate=losses_acc, geometry_accelerate=geometry(grads_acc, reduce=all_sum),
                fsdp_modules_accelerate=fsdp_names(via_acc))
    return seen


def worker(out: Path) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo")
    out.mkdir(parents=True, exist_ok=True)
    try:
        for arch in ARCHS:
            t = time.perf_counter()
            seen = check_case(arch)
            seen["seconds"] = time.perf_counter() - t
            (out / f"{arch}.rank{dist.get_rank()}.json").write_text(json.dumps(seen))
        dist.barrier()
    finally:
        dist.destroy_process_group()


# ------------------------------------------------------------------ in one process


@pytest.mark.parametrize("arch", list(ARCHS))
def test_layer_classes_come_from_no_split_modules(arch):
    from unlearn.fsdp import layer_classes

    classes = layer_classes(build(arch))
    assert [c.__name__ for c in classes] == [ARCHS[arch][2]]


def test_a_model_without_no_split_modules_is_refused():
    from unlearn.fsdp import layer_classes, shard_model

    class Plain(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = torch.nn.ModuleList([torch.nn.Linear(4, 4) for _ in range(2)])

    with pytest.raises(ValueError, match=r"Plain declares no `_no_split_modules`"):
        layer_classes(Plain())
    with pytest.raises(ValueError, match="Plain declares no"):
        shard_model(Plain())  # before any collective: no process group needed
    ghost = Plain()
    ghost._no_split_modules = ["GhostLayer"]
    with pytest.raises(ValueError, match=r"Plain's `_no_split_modules` \['GhostLayer'\] name no module"):
        layer_classes(ghost)


def test_configure_accelerate_fsdp_sets_the_plugin_names():
    """accelerate's own policy builder (FSDP2) then wraps exactly the decoder blocks; a non-FSDP
    accelerator or a NO_WRAP plugin is left alone."""
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin
    from accelerate.utils.fsdp_utils import fsdp2_prepare_auto_wrap_policy

    from unlearn.fsdp import configure_accelerate_fsdp

    def stub(**plugin_kw):
        plugin = FullyShardedDataParallelPlugin(fsdp_version=2, reshard_after_forward=True, **plugin_kw)
        return SimpleNamespace(distributed_type=DistributedType.FSDP, state=SimpleNamespace(fsdp_plugin=plugin))

    model = build("phi")
    acc = stub(auto_wrap_policy="transformer_based_wrap", transformer_cls_names_to_wrap=["LlamaDecoderLayer"])
    assert configure_accelerate_fsdp(acc, model) == ["PhiDecoderLayer"]
    assert acc.state.fsdp_plugin.transformer_cls_names_to_wrap == ["PhiDecoderLayer"]
    acc.state.fsdp_plugin.set_auto_wrap_policy(model)  # what prepare does first
    policy = fsdp2_prepare_auto_wrap_policy(acc.state.fsdp_plugin, model)
    wrapped = [n for n, m in model.named_modules() if policy(m)]
    assert wrapped == ["model.layers.0", "model.layers.1"]
    # a second model of another architecture after a prepare (the partial is reset)
    assert configure_accelerate_fsdp(acc, build("qwen2")) == ["Qwen2DecoderLayer"]
    assert acc.state.fsdp_plugin.auto_wrap_policy.__name__ == "transformer_auto_wrap_policy"

    assert configure_accelerate_fsdp(stub(auto_wrap_policy="no_wrap"), model) is None
    assert configure_accelerate_fsdp(SimpleNamespace(distributed_type=DistributedType.MULTI_CPU), model) is None
    assert configure_accelerate_fsdp(None, model) is None


def test_fsdp_yaml_names_no_layer_class():
    import yaml

    cfg = yaml.safe_load((ROOT / "conf" / "accelerate" / "fsdp.yaml").read_text())
    assert cfg["distributed_type"] == "FSDP" and cfg["fsdp_config"]["fsdp_version"] == 2
    assert cfg["fsdp_config"]["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    assert "fsdp_transformer_layer_cls_to_wrap" not in cfg["fsdp_config"]
    assert cfg["mixed_precision"] == "no"


# ------------------------------------------------------------------ two processes (gloo)


@pytest.fixture(scope="module")
def two_process_fsdp(tmp_path_factory):
    out = tmp_path_factory.mktemp("fsdp")
    t = time.perf_counter()
    proc = torchrun(str(Path(__file__).resolve()), str(out), timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    print(f"torchrun 2 processes, {len(ARCHS)} architectures: {time.perf_counter() - t:.1f} s")
    return out


@pytest.mark.slow  # two processes (spawned) under FSDP2: the slow tier (CI runs it)
@pytest.mark.parametrize("arch", list(ARCHS))
def test_sharded_task_gradient_geometry_is_exact(arch, two_process_fsdp):
    ranks = [json.loads((two_process_fsdp / f"{arch}.rank{r}.json").read_text()) for r in (0, 1)]
    r0 = ranks[0]
    for seen in ranks:
        assert seen["losses_sharded"] == pytest.approx(seen["losses_ref"], rel=REL)
        assert seen["losses_accelerate"] == pytest.approx(seen["losses_ref"], rel=REL)
        assert seen["geometry_sharded"] == pytest.approx(seen["geometry_ref"], rel=REL)
        assert seen["geometry_accelerate"] == pytest.approx(seen["geometry_ref"], rel=REL)
        assert seen["max_grad_diff"] < 1e-6
        # the per-rank shard sums are partial: the reduce is what makes them global
        assert seen["geometry_local"][0] < seen["geometry_ref"][0] * (1 - 1e-3)
        # every decoder block is its own FSDP unit, the root too; parameters are sharded over 2 ranks
        # (fully_shard swaps a module's class for an FSDP<Class> subclass: isinstance still holds)
        assert seen["blocks"] == ["FSDP" + ARCHS[arch][2]] * SIZE["num_hidden_layers"]
        assert all(seen["blocks_fsdp"]) and seen["root_fsdp"]
        assert seen["all_dtensor"] and seen["grads_dtensor"]
        assert seen["mesh_sizes"] == [2] and seen["placements"] == ["(Shard(dim=0),)"]
        assert seen["local_numel"] < seen["full_numel"]
        assert seen["tied_kept"] is ARCHS[arch][3]["tie_word_embeddings"]
        # accelerate's FSDP2 path, on the names configure_accelerate_fsdp set, groups the same way
        assert seen["configured"] == [ARCHS[arch][2]]
        # ... except that under peft accelerate's final-norm lookup (`_find_final_norm`, on the
        # PeftModel) misses the norm, which then stays in the root group; shard_model unwraps peft
        missed = {"base_model.model.model.norm"} if arch.endswith("_lora") else set()
        assert set(seen["fsdp_modules"]) - set(seen["fsdp_modules_accelerate"]) == missed
        assert set(seen["fsdp_modules_accelerate"]) <= set(seen["fsdp_modules"])
    assert ranks[0]["local_numel"] + ranks[1]["local_numel"] == r0["full_numel"]
    assert ranks[0]["geometry_sharded"] == ranks[1]["geometry_sharded"]  # every rank: the same numbers


if __name__ == "__main__":
    worker(Path(sys.argv[1]))

"""Small Hugging Face transformers models for tests/test_transformers.py (issue 7, part 1).

Every model is built from a small config with seeded random weights, in ``eval()`` mode;
nothing is downloaded (``HF_HUB_OFFLINE=1``). Each :class:`HFCase` holds the facts a run of
transformers ``TESTED_VERSION`` showed, so that the tests assert them:

* ``cache``: the class of the cache object that ``use_cache`` at its default puts into the
  output (``None``: the model has no cache). TorchScript cannot express it; the fix is
  ``use_cache=False`` (in the config, so that the traced signature stays tensors-only).
* ``guard``: an input that leaves the traced path and the transformers line whose guard
  refuses it (``file:line``, the code on that line).

``python tests/hf_models.py`` reruns every model and prints the Markdown table of
``docs/transformers.md``.
"""
from __future__ import annotations

import dataclasses
import os
import sys
from typing import Any, Callable, Dict, List, Optional, Tuple

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402

#: The transformers release these facts were recorded with (the ``zoo`` extra pins it).
TESTED_VERSION = "5.24.0"

VOCAB = 99
#: Token ids inside the small vocabulary (the defaults, e.g. GPT-2's 50256, are not).
TOKENS = dict(vocab_size=VOCAB, pad_token_id=0, bos_token_id=1, eos_token_id=2)
#: (batch, sequence length) of the example the models are traced with.
TRACED = (2, 7)


@dataclasses.dataclass
class HFCase:
    name: str
    build: Callable[..., torch.nn.Module]          # build(**config_overrides)
    inputs: Callable[[int, int], Dict[str, torch.Tensor]]   # inputs(batch, length)
    cache: Optional[str]                           # cache class in the default output
    other: List[Tuple[int, int]]                   # other (batch, length): equal to eager
    guard: Tuple[Tuple[int, int], str, str]        # ((batch, length), "file:line", code)
    traced: Tuple[int, int] = TRACED
    note: str = ""

    def fixed(self) -> torch.nn.Module:
        """The model with the fix for TorchScript applied (``use_cache=False`` in the config)."""
        return self.build(use_cache=False) if self.cache else self.build()

    @property
    def fix(self) -> str:
        return "use_cache=False" if self.cache else "none needed"


def _seeded(factory: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    torch.manual_seed(0)
    return factory().eval()


def text_inputs(batch: int, length: int) -> Dict[str, torch.Tensor]:
    """``input_ids`` and an ``attention_mask`` that pads the last two tokens of row 0."""
    g = torch.Generator().manual_seed(1000 * batch + length)
    ids = torch.randint(3, VOCAB, (batch, length), generator=g)
    mask = torch.ones(batch, length, dtype=torch.long)
    if length > 2:
        mask[0, -2:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def t5_inputs(batch: int, length: int) -> Dict[str, torch.Tensor]:
    """Encoder inputs of ``length`` tokens, decoder inputs of ``max(1, length - 2)``."""
    kw = text_inputs(batch, length)
    kw["decoder_input_ids"] = kw["input_ids"][:, :max(1, length - 2)].clone()
    return kw


def image_inputs(batch: int, size: int) -> Dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1000 * batch + size)
    return {"pixel_values": torch.randn(batch, 3, size, size, generator=g)}


def bert(**overrides: Any) -> torch.nn.Module:
    from transformers import BertConfig, BertModel
    return _seeded(lambda: BertModel(BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
        max_position_embeddings=64, **TOKENS, **overrides)))


def gpt2(**overrides: Any) -> torch.nn.Module:
    from transformers import GPT2Config, GPT2Model
    return _seeded(lambda: GPT2Model(GPT2Config(
        n_embd=32, n_layer=2, n_head=2, n_positions=64, **TOKENS, **overrides)))


def t5(**overrides: Any) -> torch.nn.Module:
    from transformers import T5Config, T5Model
    return _seeded(lambda: T5Model(T5Config(
        d_model=32, d_kv=16, d_ff=37, num_layers=2, num_heads=2, decoder_start_token_id=0,
        **TOKENS, **overrides)))


def vit(**overrides: Any) -> torch.nn.Module:
    from transformers import ViTConfig, ViTModel
    return _seeded(lambda: ViTModel(ViTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
        image_size=16, patch_size=4, num_channels=3, **overrides)))


def llama(**overrides: Any) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaModel
    return _seeded(lambda: LlamaModel(LlamaConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
        intermediate_size=37, max_position_embeddings=64, **TOKENS, **overrides)))


SDPA_148 = ("sdpa_attention.py:148",
            "is_causal = q_length > 1 and attention_mask is None and is_causal")

CASES: List[HFCase] = [
    HFCase("bert", bert, text_inputs, cache=None,
           other=[(3, 7), (1, 7), (2, 5), (2, 11)], guard=((2, 1), *SDPA_148)),
    HFCase("gpt2", gpt2, text_inputs, cache="DynamicCache",
           other=[(3, 7), (1, 7), (2, 5), (2, 11)], guard=((2, 1), *SDPA_148)),
    HFCase("t5", t5, t5_inputs, cache="EncoderDecoderCache",
           other=[(3, 7), (1, 7), (2, 5), (2, 11)], guard=((2, 1), *SDPA_148),
           note="a decoder of length 1 alone fails the guard at masking_utils.py:292"),
    HFCase("vit", vit, image_inputs, cache=None, traced=(2, 16),
           other=[(3, 16), (1, 16)],
           guard=((2, 32), "modeling_vit.py:152",
                  "if height != self.image_size[0] or width != self.image_size[1]:"),
           note="eager raises ValueError for a 32x32 image too (no interpolate_pos_encoding)"),
    HFCase("llama", llama, text_inputs, cache="DynamicCache",
           other=[(3, 7), (1, 7), (2, 5), (2, 11)],
           guard=((2, 1), "sdpa_attention.py:121",
                  "elif q_length == 1 and not is_torchdynamo_compiling():")),
]
BY_NAME = {c.name: c for c in CASES}


def eager(model: torch.nn.Module, inputs: Dict[str, torch.Tensor]) -> Any:
    with torch.no_grad():
        return model(**inputs)


# ------------------------------------------------------------------ the table of the docs

def _guard_text(exc: BaseException) -> str:
    msg = str(exc)
    i = msg.find("fxtrace guard failed at ")
    if i < 0:
        return f"{type(exc).__name__}: {msg.splitlines()[-1][:80] if msg else ''}"
    return msg[i + len("fxtrace guard failed at "):].split(" ", 1)[0]


def _equal(out: Any, ref: Any) -> bool:
    try:
        assert list(out.keys()) == list(ref.keys())
        for k in ref.keys():
            torch.testing.assert_close(out[k], ref[k])
        return True
    except (AssertionError, AttributeError):
        return False


def table() -> str:  # pragma: no cover - run by hand to regenerate docs/transformers.md
    import warnings

    import transformers

    import fxtrace
    warnings.simplefilter("ignore")
    rows = ["| model | defaults (`use_cache` at its default) | fix | traced with the fix | "
            "other batch / length | guard (input → line) | torch.jit.trace |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for c in CASES:
        kw = c.inputs(*c.traced)
        try:
            fxtrace.trace(c.build(), example_kwarg_inputs=kw, strict=False)
            default = "OK"
        except fxtrace.FxTraceError as e:
            default = f"{type(e).__name__} naming `{c.cache}`" if c.cache and c.cache in str(e) \
                else f"{type(e).__name__}"
        model = c.fixed()
        traced = fxtrace.trace(model, example_kwarg_inputs=kw, strict=False)
        ok = _equal(traced(**kw), eager(model, kw))
        result = f"OK, `{traced.forward.schema.returns[0].type}` of " \
                 f"{', '.join(eager(model, kw).keys())}" if ok else "differs"
        others = all(_equal(traced(**c.inputs(b, s)), eager(model, c.inputs(b, s)))
                     for b, s in c.other)
        shape, line, _ = c.guard
        try:
            traced(**c.inputs(*shape))
            guard = f"{shape}: no guard"
        except torch.jit.Error as e:
            guard = f"{shape} → `{_guard_text(e)}`"
        try:
            jit = torch.jit.trace(model, example_kwarg_inputs=kw, strict=False)
            same = _equal(jit(**kw), eager(model, kw))
            try:
                g = "equal to eager" if _equal(jit(**c.inputs(*shape)), eager(model, c.inputs(*shape))) \
                    else "differs from eager"
            except Exception as e:  # noqa: BLE001
                g = f"{type(e).__name__}"
            jit_text = f"{'OK' if same else 'differs'}; at {shape}: {g}"
        except Exception as e:  # noqa: BLE001
            jit_text = f"{type(e).__name__}"
        rows.append(f"| {c.name} | {default} | {c.fix} | {result} | "
                    f"{'equal to eager' if others else 'differs'} {c.other} | {guard} | {jit_text} |")
    return f"transformers {transformers.__version__}, torch {torch.__version__}\n\n" + "\n".join(rows)


if __name__ == "__main__":  # pragma: no cover
    sys.stdout.write(table() + "\n")

"""Hugging Face's Llama made exact in float64: the reference of tests/test_llama.py and tests/test_smollm.py.

``LlamaRMSNorm`` and ``LlamaRotaryEmbedding`` compute in float32 whatever the model's
dtype (an upcast meant for half precision); patched here to compute in the model's
dtype, so that attnlib's float64 model can be compared to 1e-10.
"""

from __future__ import annotations

import types

import torch
from torch import nn
from transformers.models.llama.modeling_llama import LlamaRMSNorm, LlamaRotaryEmbedding

f64 = torch.float64


def hf_in_float64(model: nn.Module) -> nn.Module:
    """Make a Hugging Face Llama compute its RMSNorms and rotary table in the model's dtype."""

    def rms_norm(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon))

    def rotary(self, x, position_ids):
        parameters = getattr(self.config, "rope_parameters", None)
        base = parameters["rope_theta"] if parameters else self.config.rope_theta
        dim = self.config.hidden_size // self.config.num_attention_heads
        inv_freq = base ** (-torch.arange(0, dim, 2, dtype=f64) / dim)  # (Dh/2,)
        angles = position_ids[..., None].to(f64) * inv_freq  # (B, T, Dh/2)
        angles = torch.cat((angles, angles), dim=-1)
        return angles.cos().to(x.dtype), angles.sin().to(x.dtype)

    for module in model.modules():
        if isinstance(module, LlamaRMSNorm):
            module.forward = types.MethodType(rms_norm, module)
        elif isinstance(module, LlamaRotaryEmbedding):
            module.forward = types.MethodType(rotary, module)
    return model

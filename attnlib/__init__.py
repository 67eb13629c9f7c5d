"""attnlib: attention and transformers built step by step in readable PyTorch.

The package behind the book *attnlib and its book*. Every module matches a chapter:

* :mod:`attnlib.rnn` -- RNN, LSTM and GRU written from their equations (chapter 01)
* :mod:`attnlib.data` -- the running translation task (chapters 02, 03, 08) and the help-text corpus (chapters 10, 11)
* :mod:`attnlib.seq2seq` -- GRU encoder-decoders with and without attention (chapters 02, 03)
* :mod:`attnlib.decoding` -- the seq2seq model protocol and greedy decoding
* :mod:`attnlib.functional` -- scaled dot-product attention and masks (chapter 04)
* :mod:`attnlib.attention` -- multi-head attention (chapters 05 and 06)
* :mod:`attnlib.positional` -- positional encodings (chapter 07)
* :mod:`attnlib.shapes` -- a shape tracer for any module (chapter 06)
* :mod:`attnlib.transformer` -- the encoder-decoder transformer (chapter 08)
* :mod:`attnlib.bert` -- a BERT-style encoder with masked-language-model and classification heads (chapters 11, 13)
* :mod:`attnlib.pretrain_bert` -- chapter 11's pretraining run (``python -m attnlib.pretrain_bert``) and its shipped checkpoint
* :mod:`attnlib.wordpiece` -- BERT's WordPiece tokenizer (chapter 13)
* :mod:`attnlib.pretrained` -- the pretrained all-MiniLM-L6-v2, loaded offline (chapter 13)
* :mod:`attnlib.gpt` -- a decoder-only GPT with a KV cache (chapter 10)
* :mod:`attnlib.vit` -- the vision transformer (chapter 12)
* :mod:`attnlib.efficient` -- tiled attention with an online softmax (chapter 14)
* :mod:`attnlib.distributed` -- running attnlib's training loop under torchrun (chapter 14)
* :mod:`attnlib.linear_rnn` -- linear attention and gated linear recurrences, minGRU and minLSTM (chapter 16)
* :mod:`attnlib.mixers` -- one model shell around four sequence mixers, trained on recall and parity (chapter 16)
* :mod:`attnlib.llama` -- the modern decoder: RMSNorm, SwiGLU, rotary embeddings, grouped-query attention (chapter 15)
* :mod:`attnlib.smollm` -- the pretrained SmolLM2-135M-Instruct, loaded offline from its GGUF file (chapter 15)
* :mod:`attnlib.bpe` -- byte-level BPE: SmolLM2's tokenizer and chat template, read from the same file (chapter 15)
* :mod:`attnlib.circuits` -- attention maps, induction-head scores, head ablation and attribution (chapter 17)
* :mod:`attnlib.train` -- the training loop every chapter uses
* :mod:`attnlib.viz` -- attention heatmaps
* :mod:`attnlib.utils` -- device, seeding, showing source code

Conventions: tensors are batch-first; a boolean ``attn_mask`` is ``True`` where a
query *may attend* (as in :func:`torch.nn.functional.scaled_dot_product_attention`);
``key_padding_mask`` is ``True`` at padding keys (as in PyTorch).
"""

from . import (
    attention,
    bert,
    bpe,
    circuits,
    data,
    decoding,
    distributed,
    efficient,
    functional,
    gpt,
    linear_rnn,
    llama,
    mixers,
    positional,
    pretrained,
    rnn,
    seq2seq,
    shapes,
    smollm,
    train,
    transformer,
    utils,
    vit,
    viz,
    wordpiece,
)
from .attention import KVCache, MultiHeadAttention
from .bert import BertConfig, BertEncoder, BertForMaskedLM, BertForSequenceClassification, mask_tokens
from .bpe import ByteLevelBPETokenizer
from .circuits import (
    RecordedAttention,
    ablate_heads,
    attention_modules,
    attention_rollout,
    collect_attention,
    duplicate_token_score,
    gradient_x_input,
    head_means,
    leave_one_out,
    prefix_matching_score,
    previous_token_score,
    random_repeats,
    record_attention,
    repeated_random_tokens,
    spearman,
)
from .data import (
    TEXT_TO_TEXT_TASKS,
    CharTokenizer,
    NumberTranslation,
    Seq2SeqBatch,
    TaskExample,
    TextToText,
    TokenTask,
    Vocab,
    associative_recall,
    lm_batches,
    load_pydoc_topics,
    modular_prefix_sum,
    pydoc_topics,
)
from .decoding import BeamSearchOutput, Seq2SeqModel, beam_search, exact_match_by_count, greedy_decode, sequence_log_prob, translate
from .distributed import DistributedBatches, DistributedContext, init_distributed, shutdown_distributed, wrap_model
from .efficient import PeakMemory, tiled_attention
from .functional import (
    attention_weights,
    causal_mask,
    padding_mask,
    safe_softmax,
    scaled_dot_product_attention,
)
from .gpt import GPT, filter_logits
from .linear_rnn import (
    LinearAttention,
    LinearAttentionState,
    MinGRU,
    MinLSTM,
    elu_feature_map,
    linear_attention,
    linear_attention_recurrent,
    linear_attention_step,
    parallel_scan_log,
    sequential_scan,
)
from .llama import LlamaBlock, LlamaConfig, LlamaModel, RMSNorm, SwiGLU
from .mixers import SequenceModel, recall_sweep_results, train_recall, train_token_task
from .positional import (
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    RotarySelfAttention,
    SinusoidalPositionalEncoding,
    alibi_bias,
    alibi_slopes,
    sinusoidal_encoding,
)
from .pretrained import SentenceEncoder, load_bert_encoder, load_tokenizer, mean_pooling
from .rnn import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell
from .seq2seq import (
    AdditiveAttention,
    AttentionDecoder,
    DotProductAttention,
    GRUEncoder,
    MeanPooling,
    PlainDecoder,
    Seq2Seq,
    gru_seq2seq,
)
from .shapes import ShapeTrace, ShapeTracer, trace_shapes
from .smollm import load_smollm
from .train import inverse_sqrt_schedule
from .transformer import (
    AttentionMaps,
    Decoder,
    DecoderLayer,
    Encoder,
    EncoderLayer,
    FeedForward,
    Transformer,
    TransformerConfig,
)
from .utils import get_device, glue, measure_time, measure_times, progress, seed_everything, show_source
from .vit import PatchEmbedding, ViT, ViTConfig, patchify
from .viz import plot_attention, plot_attention_heads
from .wordpiece import WordPieceTokenizer

__version__ = "0.2.0"

__all__ = [
    "__version__",
    # modules
    "attention",
    "data",
    "decoding",
    "functional",
    "positional",
    "rnn",
    "seq2seq",
    "shapes",
    "train",
    "transformer",
    "utils",
    "viz",
    # recurrent networks
    "RNNCell",
    "LSTMCell",
    "GRUCell",
    "RNN",
    "LSTM",
    "GRU",
    # sequence to sequence (chapters 02 and 03)
    "NumberTranslation",
    "Seq2SeqBatch",
    "Vocab",
    "Seq2SeqModel",
    "greedy_decode",
    "translate",
    "GRUEncoder",
    "PlainDecoder",
    "AdditiveAttention",
    "DotProductAttention",
    "MeanPooling",
    "AttentionDecoder",
    "Seq2Seq",
    "gru_seq2seq",
    # attention
    "scaled_dot_product_attention",
    "attention_weights",
    "safe_softmax",
    "causal_mask",
    "padding_mask",
    "MultiHeadAttention",
    # positions
    "sinusoidal_encoding",
    "SinusoidalPositionalEncoding",
    "LearnedPositionalEmbedding",
    "RotaryEmbedding",
    "RotarySelfAttention",
    "alibi_slopes",
    "alibi_bias",
    # the transformer
    "TransformerConfig",
    "FeedForward",
    "EncoderLayer",
    "DecoderLayer",
    "Encoder",
    "Decoder",
    "AttentionMaps",
    "Transformer",
    # helpers
    "ShapeTrace",
    "ShapeTracer",
    "trace_shapes",
    "get_device",
    "seed_everything",
    "measure_time",
    "measure_times",
    "progress",
    "glue",
    "show_source",
    "plot_attention",
    "plot_attention_heads",
    # BERT and the pretrained MiniLM (chapters 11, 13)
    "bert",
    "pretrained",
    "wordpiece",
    "BertConfig",
    "BertEncoder",
    "BertForMaskedLM",
    "BertForSequenceClassification",
    "mask_tokens",
    "SentenceEncoder",
    "load_bert_encoder",
    "load_tokenizer",
    "mean_pooling",
    "WordPieceTokenizer",
    # decoding, text data and training pieces (chapters 08, 10)
    "KVCache",
    "TEXT_TO_TEXT_TASKS",
    "TaskExample",
    "TextToText",
    "CharTokenizer",
    "load_pydoc_topics",
    "pydoc_topics",
    "lm_batches",
    "BeamSearchOutput",
    "beam_search",
    "sequence_log_prob",
    "exact_match_by_count",
    "inverse_sqrt_schedule",
    # GPT (chapter 10)
    "gpt",
    "GPT",
    "filter_logits",
    # efficient attention and training on several processes (chapter 14)
    "efficient",
    "distributed",
    "tiled_attention",
    "PeakMemory",
    "DistributedBatches",
    "DistributedContext",
    "init_distributed",
    "shutdown_distributed",
    "wrap_model",
    # the vision transformer (chapter 12)
    "vit",
    "ViTConfig",
    "ViT",
    "PatchEmbedding",
    "patchify",
    # linear attention and gated linear recurrences (chapter 16)
    "linear_rnn",
    "elu_feature_map",
    "LinearAttentionState",
    "linear_attention",
    "linear_attention_step",
    "linear_attention_recurrent",
    "LinearAttention",
    "sequential_scan",
    "parallel_scan_log",
    "MinGRU",
    "MinLSTM",
    # one shell, four sequence mixers (chapter 16)
    "mixers",
    "SequenceModel",
    "train_token_task",
    "train_recall",
    "recall_sweep_results",
    "TokenTask",
    "associative_recall",
    "modular_prefix_sum",
    # the modern decoder and SmolLM2-135M-Instruct (chapter 15)
    "llama",
    "smollm",
    "RMSNorm",
    "SwiGLU",
    "LlamaConfig",
    "LlamaBlock",
    "LlamaModel",
    "load_smollm",
    # SmolLM2's byte-level BPE tokenizer (chapter 15)
    "bpe",
    "ByteLevelBPETokenizer",
    # what attention learns: induction heads, ablation, attribution (chapter 17)
    "circuits",
    "attention_modules",
    "RecordedAttention",
    "record_attention",
    "collect_attention",
    "repeated_random_tokens",
    "random_repeats",
    "previous_token_score",
    "prefix_matching_score",
    "duplicate_token_score",
    "ablate_heads",
    "head_means",
    "gradient_x_input",
    "leave_one_out",
    "spearman",
    "attention_rollout",
]

"""Train the tiny models' tokenizers offline, deterministically, in the real tokenizers' layouts.

transformers' tokenizer classes (``CLIPTokenizer``, ``T5Tokenizer``, ``Qwen2Tokenizer``) carry the real
normalisation and pre-tokenisation pipelines; only the vocabulary is ours, learned from the built-in corpus.

Two traps make a naive ``train_new_from_iterator`` unfit for reproducible builds:

1. The Rust trainers number tokens in hash-map order, which changes from process to process, and the BPE trainer
   breaks ties between equally frequent pairs by those numbers, so even the merge list changes. Byte-level BPE is
   therefore trained here by a small deterministic trainer (ties broken by the pair's text), and the Unigram
   trainer's output is renumbered canonically (rounded score, then piece).
2. CLIP marks word ends with ``</w>``: a byte seen only mid-word in the corpus would have no ``c</w>`` token and a
   rare word-final character would become unk. Every byte character is added both bare and with ``</w>``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping

from tokenizers import pre_tokenizers
from transformers import CLIPTokenizer, Qwen2Tokenizer, T5Tokenizer

from artaug.tiny.corpus import corpus, rare_characters

CLIP_SPECIAL_TOKENS = ("<|startoftext|>", "<|endoftext|>")
# The special tokens of Qwen2-VL in the order (and so with the relative ids) of the real tokenizer.
QWEN2_VL_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)


def byte_alphabet() -> list[str]:
    """The 256 byte-level characters, ordered by code point: the order of GPT-2, CLIP and Qwen2 vocabularies."""
    return sorted(pre_tokenizers.ByteLevel.alphabet())


def _merge_word(symbols: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    out: list[str] = []
    i = 0
    while i < len(symbols):
        if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == pair:
            out.append(symbols[i] + symbols[i + 1])
            i += 2
        else:
            out.append(symbols[i])
            i += 1
    return tuple(out)


def train_bpe_merges(words: Mapping[str, int], num_merges: int, end_of_word_suffix: str = "") -> list[tuple[str, str]]:
    """Byte-pair encoding (Sennrich et al., 2016): repeatedly merge the most frequent adjacent pair.

    Ties are broken by the pair's text, so the merge list depends on the corpus alone. Stops early once no pair
    occurs twice. ``words`` maps pre-tokenised (byte-level) words to their counts.
    """
    spelled = Counter({(*word[:-1], word[-1] + end_of_word_suffix): n for word, n in words.items() if word})
    merges: list[tuple[str, str]] = []
    while len(merges) < num_merges:
        pairs: Counter[tuple[str, str]] = Counter()
        for symbols, n in spelled.items():
            for pair in zip(symbols, symbols[1:], strict=False):
                pairs[pair] += n
        if not pairs:
            break
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))
        if pairs[best] < 2:
            break
        merges.append(best)
        merged: Counter[tuple[str, ...]] = Counter()
        for symbols, n in spelled.items():
            merged[_merge_word(symbols, best) if len(symbols) > 1 else symbols] += n
        spelled = merged
    return merges


def _count_words(tokenizer, texts: Iterable[str]) -> Counter[str]:
    # The tokenizer's own normaliser and pre-tokeniser, so training sees exactly what encoding will see.
    backend = tokenizer.backend_tokenizer
    words: Counter[str] = Counter()
    for text in texts:
        if backend.normalizer is not None:
            text = backend.normalizer.normalize_str(text)
        words.update(piece for piece, _ in backend.pre_tokenizer.pre_tokenize_str(text))
    return words


def _bpe_vocab(merges: list[tuple[str, str]], end_of_word_suffix: str = "") -> dict[str, int]:
    # Canonical ids: the byte alphabet (bare, then with the word-end suffix), then each merge's result in merge order.
    tokens = byte_alphabet()
    if end_of_word_suffix:
        tokens += [c + end_of_word_suffix for c in byte_alphabet()]
    vocab = {token: i for i, token in enumerate(tokens)}
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    return vocab


def train_clip_tokenizer(vocab_size: int = 1024, texts: Iterable[str] | None = None) -> CLIPTokenizer:
    """A ``CLIPTokenizer`` in the real layout: bytes, bytes + ``</w>``, merges, then ``<|startoftext|>``,
    ``<|endoftext|>`` last (so eos is the largest id, never 2). ``model_max_length`` is CLIP's 77."""
    words = _count_words(CLIPTokenizer(), corpus() if texts is None else texts)
    num_merges = vocab_size - 2 * 256 - len(CLIP_SPECIAL_TOKENS)
    merges = train_bpe_merges(words, num_merges, end_of_word_suffix="</w>")
    vocab = _bpe_vocab(merges, end_of_word_suffix="</w>")
    for token in CLIP_SPECIAL_TOKENS:
        vocab[token] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)


def train_qwen2_tokenizer(vocab_size: int = 1024, texts: Iterable[str] | None = None) -> Qwen2Tokenizer:
    """A byte-level ``Qwen2Tokenizer``: bytes, merges, then Qwen2-VL's special tokens in their real order.

    eos is ``<|im_end|>`` and pad ``<|endoftext|>``, as in Qwen2-VL-Instruct. The vision and box tokens are special,
    so they stay single tokens and ``decode(skip_special_tokens=True)`` drops them as the real one does.
    """
    words = _count_words(Qwen2Tokenizer(), corpus() if texts is None else texts)
    merges = train_bpe_merges(words, vocab_size - 256 - len(QWEN2_VL_SPECIAL_TOKENS))
    vocab = _bpe_vocab(merges)
    for token in QWEN2_VL_SPECIAL_TOKENS:
        vocab[token] = len(vocab)
    return Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        extra_special_tokens=list(QWEN2_VL_SPECIAL_TOKENS[1:]),
        model_max_length=32768,
    )


def train_t5_tokenizer(vocab_size: int = 1024, texts: Iterable[str] | None = None) -> T5Tokenizer:
    """A Unigram ``T5Tokenizer`` in the real layout: ``<pad>``, ``</s>``, ``<unk>``, pieces, 100 sentinels last.

    The Unigram trainer's scores wobble in the fourth decimal between processes (and its ids follow hash order), so
    pieces are renumbered by score rounded to two decimals, then by text. Every character of the corpus, the rare
    ones included, is kept as a piece of its own, so nothing the corpus exercises becomes ``<unk>``.
    """
    texts = list(corpus() if texts is None else texts)
    trained = T5Tokenizer().train_new_from_iterator([texts], vocab_size)
    pieces = json.loads(trained.backend_tokenizer.to_str())["model"]["vocab"]
    specials = {"<pad>", "</s>", "<unk>"}
    scores = {piece: round(score, 2) for piece, score in pieces if piece not in specials and "<extra_id_" not in piece}
    floor = min(scores.values()) - 1.0
    for char in "▁" + rare_characters() + "".join(sorted({c for text in texts for c in text if not c.isspace()})):
        scores.setdefault(char, floor)
    ordered = sorted(scores.items(), key=lambda item: (-item[1], item[0]))
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), *ordered]
    return T5Tokenizer(vocab=vocab, model_max_length=512)

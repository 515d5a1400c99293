"""Users per second of constrained retrieval decoding: recjax vs transformers' generate.

Both decode the top 20 of beam 20 over Beauty's 12,101 item IDs (tokenized with the T5
SentencePiece vocabulary; every beam held to the trie of valid IDs) from the same random
small-shaped T5 (recjax.config.SIZES["small"], float32): recjax's jitted beam search
(`recjax.decoding.ItemDecoder`) and `T5ForConditionalGeneration.generate` with a
`prefix_allowed_tokens_fn` over a nested-dict trie of the same token sequences, the way OpenP5
evaluates. The HF model is built from the SAME weights through `recjax.hf_mapping`, so the two
top-20 lists are compared too (agreement printed). Inputs: Beauty test users rendered with the
retrieval template (history of up to 20 items "ID (text)"), sorted by length and batched.

    python benchmarks/bench_decode.py                       # defaults below
    python benchmarks/bench_decode.py --users 256 --hf_users 64 --batch 16
    python benchmarks/bench_decode.py --threads 1    # both libraries on one thread

Threads matter on a shared machine: torch's OpenMP pool degrades far more than XLA's when the
cores are oversubscribed, so compare at --threads 1 as well as at the defaults.

History exclusion is off for both (OpenP5 does not exclude during decoding); recjax with
exclusion is timed as an extra line.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("RECJAX_SHARED_DATA", REPO.parent / "shared" / "data"))


def load_inputs(num_users: int, seed: int):
    """Beauty (P5 split, recjax's random item IDs): item IDs, encoded inputs of sampled test users."""
    import sentencepiece as spm

    from recjax.data.preparation import build
    from tasks import kinds, templates

    dataset, _ = build("p5", str(SHARED / "beauty"), "beauty")
    sp = spm.SentencePieceProcessor(model_file=str(SHARED / "t5_tokenizer" / "spiece_rebuilt.model"))
    histories, targets = dataset.loo_split("test")
    users = np.random.default_rng(seed).permutation(dataset.num_users)[:num_users]
    template = kinds.get("retrieval").templates[0]
    texts = [templates.item_text(i, t) for i, t in zip(dataset.item_ids, dataset.item_titles)]
    inputs = []
    for u in users:
        shown = histories[u][-20:]
        text, _ = template.render(history=templates.history_text([texts[i] for i in shown]), target="")
        inputs.append(sp.encode(text) + [1])
    item_tokens = [sp.encode(i) for i in dataset.item_ids]
    return dataset.item_ids, item_tokens, inputs, [histories[u] for u in users]


def batches(inputs, batch):
    from recjax.model_inputs import input_bucket

    order = np.argsort([len(x) for x in inputs], kind="stable")
    for start in range(0, len(order) - batch + 1, batch):
        rows = order[start:start + batch]
        width = input_bucket(max(len(inputs[r]) for r in rows))  # recjax eval's padding
        enc = np.zeros((batch, width), np.int32)
        for i, r in enumerate(rows):
            enc[i, :len(inputs[r])] = inputs[r]
        yield rows, enc


def warm_up_recjax(decoder, params, inputs, histories, batch, with_exclusion):
    """Compile every input-length bucket before timing."""
    seen = set()
    for rows, enc in batches(inputs, batch):
        if enc.shape[1] not in seen:
            seen.add(enc.shape[1])
            ex = decoder.exclusion([histories[r] for r in rows], 208) if with_exclusion else None
            decoder(params, enc, ex)
    return len(seen)


def run_recjax(decoder, params, inputs, histories, batch, with_exclusion):
    """Users per second of recjax alone (after warm-up)."""
    warm_up_recjax(decoder, params, inputs, histories, batch, with_exclusion)
    start, n = time.perf_counter(), 0
    for rows, enc in batches(inputs, batch):
        ex = decoder.exclusion([histories[r] for r in rows], 208) if with_exclusion else None
        decoder(params, enc, ex)
        n += len(rows)
    return n / (time.perf_counter() - start)


class NestedDictTrie:
    """OpenP5's trie: nested dicts keyed by token, sequences start with the decoder start 0."""

    def __init__(self, sequences):
        self.root = {}
        for seq in sequences:
            node = self.root
            for tok in [0] + list(seq):
                node = node.setdefault(tok, {})

    def get(self, prefix):
        node = self.root
        for tok in prefix:
            node = node.get(tok)
            if node is None:
                return []
        return list(node)


def hf_generate(model, trie, depth):
    eos = 1

    def allowed(batch_id, sent):
        tokens = trie.get(sent.tolist())
        return tokens if tokens else [eos]  # transformers 5.x: never return an empty list

    def generate(ids, **extra):
        return model.generate(input_ids=ids, attention_mask=ids > 0, num_beams=20, num_return_sequences=20,
                              max_new_tokens=depth, prefix_allowed_tokens_fn=allowed, length_penalty=0.0,
                              do_sample=False, **extra)
    return generate


def run_side_by_side(decoder, params, module, hf, trie, inputs, batch, depth, torch, jax):
    """recjax and transformers on the same batches, alternating batch by batch so that both see
    the same machine load (this machine is shared); the encoders alone timed the same way.
    Returns seconds per user {recjax, hf, recjax_encoder, hf_encoder} and both top-20 lists."""
    generate = hf_generate(hf, trie, depth)
    encode = jax.jit(lambda p, e: module.apply({"params": p}, e, enable_dropout=False, method=module.encode))
    warm_up_recjax(decoder, params, inputs, None, batch, False)
    for _, enc in batches(inputs, batch):
        jax.block_until_ready(encode(params, enc))
    seconds = dict.fromkeys(["recjax", "hf", "recjax_encoder", "hf_encoder"], 0.0)
    ours, theirs, n = {}, {}, 0
    with torch.no_grad():
        generate(torch.from_numpy(next(batches(inputs, batch))[1][:1].astype(np.int64)))  # warm-up, untimed
        for rows, enc in batches(inputs, batch):
            ids = torch.from_numpy(enc.astype(np.int64))
            t = time.perf_counter()
            out = decoder(params, enc)
            seconds["recjax"] += time.perf_counter() - t
            t = time.perf_counter()
            hf_out = generate(ids, output_scores=True, return_dict_in_generate=True)
            seconds["hf"] += time.perf_counter() - t
            t = time.perf_counter()
            jax.block_until_ready(encode(params, enc))
            seconds["recjax_encoder"] += time.perf_counter() - t
            t = time.perf_counter()
            hf.encoder(input_ids=ids, attention_mask=ids > 0)
            seconds["hf_encoder"] += time.perf_counter() - t
            seqs = hf_out.sequences.numpy().reshape(len(rows), 20, -1)
            scores = hf_out.sequences_scores.numpy().reshape(len(rows), 20)
            for i, r in enumerate(rows):
                ours[int(r)] = (out.items[i], out.log_probs[i])
                theirs[int(r)] = (seqs[i], scores[i])
            n += len(rows)
    return {k: v / n for k, v in seconds.items()}, ours, theirs


def _until_eos(tokens) -> list[int]:
    """HF pads finished sequences with EOS (its pad id here): keep up to the first EOS."""
    tokens = [int(t) for t in tokens]
    return tokens[:tokens.index(1) + 1] if 1 in tokens else tokens


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=256, help="test users decoded by recjax (timed)")
    parser.add_argument("--hf_users", type=int, default=64, help="of those, decoded by transformers (timed)")
    parser.add_argument("--batch", type=int, default=16, help="users per batch, both implementations")
    parser.add_argument("--recjax_batch", type=int, default=64, help="also time recjax at this batch size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads of BOTH torch and XLA (0: each library's default, all cores)")
    args = parser.parse_args(argv)
    if args.threads:  # must be set before jax is imported
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen="
                                   f"{'true' if args.threads > 1 else 'false'} "
                                   f"intra_op_parallelism_threads={args.threads}")

    import flax
    import jax
    import torch
    import transformers

    if args.threads:
        torch.set_num_threads(args.threads)

    from recjax import hf_mapping, network, param_tree
    from recjax.model import EncoderDecoderModel
    from recjax.config import SIZES
    from recjax.decoding import DecodeOptions, ItemDecoder
    from recjax.items.trie import ItemTrie

    item_ids, item_tokens, inputs, histories = load_inputs(args.users, args.seed)
    cfg = SIZES["small"]
    trie = ItemTrie.from_token_sequences(item_tokens, cfg.vocab_size, names=item_ids)
    lengths = np.array([len(x) for x in inputs])
    print(f"catalog: {trie.num_items} item IDs, trie {trie.num_nodes} nodes, depth {trie.depth}, "
          f"{trie.nbytes / 1024:.0f} KiB; inputs {len(inputs)} users, length median {np.median(lengths):.0f} "
          f"max {lengths.max()}")
    print(f"jax {jax.__version__} ({jax.devices()[0].platform}), torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), transformers {transformers.__version__}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")

    params = flax.linen.meta.unbox(network.init_params(cfg, jax.random.PRNGKey(args.seed)))
    params = jax.tree_util.tree_map(np.asarray, params)
    hf_cfg = transformers.T5Config(**{k: v for k, v in hf_mapping.t5config_to_hf(cfg).items()
                                      if k not in ("architectures", "torch_dtype")})
    hf = transformers.T5ForConditionalGeneration(hf_cfg)
    # transformers 5.x keeps lm_head tied to `shared` even with tie_word_embeddings=False.
    hf.lm_head.weight = torch.nn.Parameter(torch.empty_like(hf.lm_head.weight))
    state = {k: torch.from_numpy(v.copy()) for k, v in hf_mapping.params_to_hf(param_tree.flatten_params(params),
                                                                       cfg).items()}
    missing, unexpected = hf.load_state_dict(state, strict=False)
    assert not unexpected and all("embed_tokens" in m for m in missing), (missing, unexpected)
    hf.eval()

    options = DecodeOptions(beam_size=20, top_k=20, constrained=True, exclude_history=False)
    decoder = ItemDecoder(EncoderDecoderModel(cfg), trie, options)

    per_user, ours_out, hf_out = run_side_by_side(decoder, params, decoder.module, hf, NestedDictTrie(item_tokens),
                                                  inputs[:args.hf_users], args.batch, trie.depth, torch, jax)
    # recjax alone on all users at a bigger batch, without and with history exclusion.
    big = run_recjax(decoder, params, inputs, None, args.recjax_batch, False)
    excl = ItemDecoder(EncoderDecoderModel(cfg), trie, DecodeOptions(beam_size=20, top_k=20))
    big_excl = run_recjax(excl, params, inputs, histories, args.recjax_batch, True)

    # Agreement of the two top-20 lists (same weights; float32 on both sides). The searches differ
    # in one rule: transformers admits a finished (EOS) hypothesis only if it ranks in the top
    # num_beams of the 2 * num_beams candidates of its step, T5X and recjax admit every EOS
    # candidate among the 2 * num_beams; so recjax's lists can hold likelier items.
    same_list = same_top1 = ours_better_or_equal = 0
    diffs, ours_mean, hf_mean = [], [], []
    ours_items = {r: v[0] for r, v in ours_out.items()}
    ours_scores = {r: v[1] for r, v in ours_out.items()}
    for r, (seqs, scores) in hf_out.items():
        hf_items = [trie.lookup(_until_eos(s[1:])) for s in seqs]
        assert min(hf_items) >= 0, "transformers returned a sequence that is not an item ID"
        same_list += hf_items == list(ours_items[r])
        same_top1 += hf_items[0] == ours_items[r][0]
        ours_better_or_equal += ours_scores[r][0] >= scores[0] - 1e-4
        ours_mean.append(float(np.mean(ours_scores[r])))
        hf_mean.append(float(np.mean(scores)))
        ours = dict(zip(ours_items[r].tolist(), ours_scores[r].tolist()))
        diffs += [abs(ours[i] - s) for i, s in zip(hf_items, scores.tolist()) if i in ours]
    n = len(hf_out)
    print(f"agreement over {n} users: identical top-20 lists {same_list}/{n}, same top-1 {same_top1}/{n}; "
          f"recjax top-1 log-prob >= transformers' {ours_better_or_equal}/{n}; mean top-20 log-prob recjax "
          f"{np.mean(ours_mean):.3f}, transformers {np.mean(hf_mean):.3f}; |log-prob difference| of items in "
          f"both lists <= {max(diffs) if diffs else float('nan'):.1e}")
    hf_rate, ours_rate = 1 / per_user["hf"], 1 / per_user["recjax"]
    print(f"{'implementation':<62} users/s")
    print(f"{'transformers generate + prefix_allowed_tokens_fn, batch ' + str(args.batch):<62} {hf_rate:8.2f}")
    print(f"{'recjax ItemDecoder, same batches (alternating with the above)':<62} {ours_rate:8.2f}")
    print(f"{'recjax, ' + str(len(inputs)) + ' users, batch ' + str(args.recjax_batch):<62} {big:8.2f}")
    print(f"{'recjax, ' + str(len(inputs)) + ' users, batch ' + str(args.recjax_batch) + ', excluding history':<62} "
          f"{big_excl:8.2f}")
    dec_ours = per_user["recjax"] - per_user["recjax_encoder"]
    dec_hf = per_user["hf"] - per_user["hf_encoder"]
    print(f"encoder alone, s/user: recjax {per_user['recjax_encoder']:.3f}, transformers {per_user['hf_encoder']:.3f}; "
          f"decoding without the encoder, s/user: recjax {dec_ours:.3f}, transformers {dec_hf:.3f} "
          f"({dec_hf / dec_ours:.1f}x)")
    print(f"ratio recjax / transformers (same batches of {args.batch}): {ours_rate / hf_rate:.1f}x; "
          f"recjax at batch {args.recjax_batch} / transformers: {big / hf_rate:.1f}x")
    print(f"threads: {'default' if not args.threads else args.threads}; load average now {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())

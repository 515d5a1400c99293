"""Item embeddings -> L codes of K values each, plus the code that makes colliding items distinct.

- `rq_kmeans`: residual k-means (GRID's / MiniOneRec's RQ-KMeans): level l clusters the residual
  left by levels < l.
- `rq_vae`: TIGER's RQ-VAE in JAX: an MLP encoder to a latent, L residual codebooks (initialised by
  k-means on the first batch of residuals, as TIGER does), an MLP decoder; loss = reconstruction +
  codebook loss + beta * commitment, straight-through gradients.
- `hierarchical_kmeans`: k-means inside each parent cluster (a prefix tree; How to Index's
  collaborative indexing clusters the co-occurrence graph this way).
- `balanced=True` (every scheme above): codes assigned under capacities instead of to the nearest
  centroid (`balanced_assign`), so no code and no prefix holds more than its share: upper levels hold
  at most ceil(n / K) items a code (MiniOneRec's constrained RQ-KMeans), and the last level at most
  ceil(g / K) of a prefix's g items a code (LC-Rec's uniform mapping of the last level), which
  leaves no collision wherever a prefix holds <= K items.
- `dedup_codes`: TIGER's extra code: items sharing all L codes get 0, 1, 2, ... in a seeded order.
- `code_stats`: codebook usage, perplexity, collisions, prefix-tree shape.
"""
from __future__ import annotations

import numpy as np


def _kmeans(x: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(centroids [k', d], assignment [n]) with k' = min(k, n distinct rows)."""
    from sklearn.cluster import KMeans

    k = max(1, min(k, len(np.unique(x, axis=0))))
    km = KMeans(n_clusters=k, n_init=1, random_state=seed, max_iter=100).fit(x)
    return km.cluster_centers_.astype(np.float32), km.labels_.astype(np.int32)


def _sq_distances(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """[n, d], [k, d] -> [n, k] squared Euclidean distances."""
    d = (x * x).sum(1)[:, None] - 2.0 * x @ centroids.T + (centroids * centroids).sum(1)[None]
    return np.maximum(d, 0.0)


def balanced_assign(distances: np.ndarray, capacity) -> np.ndarray:
    """[n, k] distances, capacity (an int or [k]) -> [n] int32 assignment with at most capacity[j]
    points in cluster j. Rounds of proposals: every unplaced point proposes to its nearest cluster
    with room left, each cluster keeps its closest proposers up to its room (a greedy
    capacity-constrained assignment; every round places at least one point)."""
    n, k = distances.shape
    room = np.broadcast_to(np.asarray(capacity, np.int64), (k,)).copy()
    if room.sum() < n:
        raise ValueError(f"capacities hold {room.sum()} points, fewer than the {n} to assign")
    assign = np.full(n, -1, np.int64)
    pending = np.arange(n)
    while len(pending):
        d = np.where(room[None] > 0, distances[pending], np.inf)  # [p, k]
        choice = d.argmin(1)
        order = np.lexsort((d[np.arange(len(pending)), choice], choice))  # by cluster, nearest first
        chosen = choice[order]
        rank = np.arange(len(chosen)) - np.searchsorted(chosen, chosen, side="left")
        keep = rank < room[chosen]
        assign[pending[order[keep]]] = chosen[keep]
        room -= np.bincount(chosen[keep], minlength=k)
        pending = pending[order[~keep]]
    return assign.astype(np.int32)


def _level_codes(residual: np.ndarray, centroids: np.ndarray, codes: np.ndarray, level: int,
                 balanced: bool) -> np.ndarray:
    """[n] codes of `level` of a residual quantisation whose [n, levels] `codes` are filled below
    it: the nearest centroid, or (balanced) at most ceil(n / K) items a code on an upper level and,
    on the last, at most ceil(g / K) of each prefix's g items a code."""
    k = len(centroids)
    if not balanced:
        return _sq_distances(residual, centroids).argmin(1).astype(np.int32)
    if level == 0 or level < codes.shape[1] - 1:
        return balanced_assign(_sq_distances(residual, centroids), -(-len(residual) // k))
    prefix_codes = np.zeros(len(residual), np.int32)
    _, group = np.unique(codes[:, :level], axis=0, return_inverse=True)
    order = np.argsort(group.ravel(), kind="stable")
    for members in np.split(order, np.flatnonzero(np.diff(group.ravel()[order])) + 1):
        prefix_codes[members] = balanced_assign(_sq_distances(residual[members], centroids), -(-len(members) // k))
    return prefix_codes


def residual_codes(z: np.ndarray, codebooks: np.ndarray, balanced: bool = False) -> np.ndarray:
    """[n, latent], [levels, K, latent] -> [n, levels] int32 codes of residual quantisation."""
    residual = np.asarray(z, np.float32).copy()
    codes = np.zeros((len(residual), len(codebooks)), np.int32)
    for level, book in enumerate(np.asarray(codebooks, np.float32)):
        codes[:, level] = _level_codes(residual, book, codes, level, balanced)
        residual -= book[codes[:, level]]
    return codes


def rq_kmeans(x: np.ndarray, levels: int, codebook_size: int, seed: int = 0, balanced: bool = False) -> np.ndarray:
    """[n, levels] int32 codes of residual k-means (balanced: see the module docstring)."""
    residual = x.astype(np.float32).copy()
    codes = np.zeros((len(x), levels), np.int32)
    for level in range(levels):
        centroids, assign = _kmeans(residual, codebook_size, seed + level)
        if balanced:
            assign = _level_codes(residual, centroids, codes, level, True)
        codes[:, level] = assign
        residual = residual - centroids[assign]
    return codes


def hierarchical_kmeans(x: np.ndarray, levels: int, codebook_size: int, seed: int = 0,
                        balanced: bool = False) -> np.ndarray:
    """[n, levels] int32 codes: level l splits each level-(l-1) cluster into <= codebook_size
    (balanced: at most ceil(g / K) of a cluster's g members in each of its children)."""
    codes = np.zeros((len(x), levels), np.int32)
    groups = [np.arange(len(x))]
    for level in range(levels):
        next_groups = []
        for members in groups:
            if len(members) <= 1:
                next_groups.append(members)
                continue
            centroids, assign = _kmeans(x[members], codebook_size, seed + level)
            if balanced:
                k = codebook_size
                if len(centroids) < k:  # fewer distinct points than codes: spare codes start at a copy
                    centroids = np.concatenate([centroids, centroids[np.arange(k - len(centroids)) % len(centroids)]])
                assign = balanced_assign(_sq_distances(x[members], centroids), -(-len(members) // k))
            codes[members, level] = assign
            next_groups.extend(members[assign == c] for c in np.unique(assign))
        groups = next_groups
    return codes


def rq_vae(x: np.ndarray, levels: int, codebook_size: int, seed: int = 0, *, latent_dim: int = 32,
           hidden: tuple[int, ...] = (256, 128), beta: float = 0.25, steps: int = 3000, batch_size: int = 1024,
           learning_rate: float = 1e-3, balanced: bool = False, log=None) -> tuple[np.ndarray, dict]:
    """TIGER's RQ-VAE trained in JAX. Returns ([n, levels] int32 codes, training figures)."""
    import jax
    import jax.numpy as jnp
    import optax
    from flax import linen as nn

    x = np.asarray(x, np.float32)
    n, dim = x.shape

    class MLP(nn.Module):
        sizes: tuple[int, ...]

        @nn.compact
        def __call__(self, h):
            for i, size in enumerate(self.sizes):
                h = nn.Dense(size)(h)
                if i < len(self.sizes) - 1:
                    h = nn.relu(h)
            return h

    encoder, decoder = MLP(tuple(hidden) + (latent_dim,)), MLP(tuple(reversed(hidden)) + (dim,))
    rng = np.random.default_rng(seed)
    key_e, key_d = jax.random.split(jax.random.PRNGKey(seed))
    params = {"encoder": encoder.init(key_e, x[:1]), "decoder": decoder.init(key_d, jnp.zeros((1, latent_dim)))}
    # Codebooks from k-means on the residuals of a first batch of latents (TIGER's initialisation).
    first = x[rng.choice(n, size=min(n, max(batch_size, 4 * codebook_size)), replace=False)]
    residual = np.asarray(encoder.apply(params["encoder"], first))
    books = []
    for level in range(levels):
        centroids, assign = _kmeans(residual, codebook_size, seed + level)
        if len(centroids) < codebook_size:  # fewer distinct latents than codes: pad with jittered copies
            extra = centroids[rng.integers(len(centroids), size=codebook_size - len(centroids))]
            centroids = np.concatenate([centroids, extra + 1e-3 * rng.standard_normal(extra.shape)], 0)
        books.append(centroids.astype(np.float32))
        residual = residual - centroids[assign]
    params["codebooks"] = jnp.asarray(np.stack(books))  # [levels, K, latent]

    def quantize(books, z):
        """z [b, latent] -> (codes [b, levels], quantized [b, latent], codebook + commitment loss)."""
        residual, quantized, codes, loss = z, jnp.zeros_like(z), [], 0.0
        for level in range(levels):
            d = ((residual[:, None, :] - books[level][None]) ** 2).sum(-1)  # [b, K]
            c = jnp.argmin(d, axis=-1)
            e = books[level][c]  # [b, latent]
            loss += ((jax.lax.stop_gradient(residual) - e) ** 2).mean() + beta * ((residual - jax.lax.stop_gradient(e)) ** 2).mean()
            codes.append(c)
            quantized = quantized + e
            residual = residual - jax.lax.stop_gradient(e)
        return jnp.stack(codes, -1), quantized, loss

    def loss_fn(p, batch):
        z = encoder.apply(p["encoder"], batch)
        _, q, vq_loss = quantize(p["codebooks"], z)
        q = z + jax.lax.stop_gradient(q - z)  # straight-through
        recon = ((decoder.apply(p["decoder"], q) - batch) ** 2).sum(-1).mean()
        return recon + vq_loss, (recon, vq_loss)

    optimizer = optax.adamw(learning_rate)
    opt_state = optimizer.init(params)

    @jax.jit
    def step(p, s, batch):
        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(p, batch)
        updates, s = optimizer.update(grads, s, p)
        return optax.apply_updates(p, updates), s, loss, aux

    recon = vq = float("nan")
    for i in range(steps):
        batch = x[rng.integers(n, size=min(batch_size, n))]
        params, opt_state, loss, (recon, vq) = step(params, opt_state, batch)
        if log is not None and (i + 1) % max(steps // 5, 1) == 0:
            log(f"  rq-vae step {i + 1}/{steps}: loss {float(loss):.4f} (reconstruction {float(recon):.4f}, vq {float(vq):.4f})")

    figures = {"reconstruction_loss": float(recon), "vq_loss": float(vq), "steps": steps}
    if balanced:  # the learned codebooks, assigned under capacities
        latent = jax.jit(encoder.apply)
        z = np.concatenate([np.asarray(latent(params["encoder"], x[s:s + 4096])) for s in range(0, n, 4096)])
        return residual_codes(z, np.asarray(params["codebooks"]), balanced=True), figures

    @jax.jit
    def encode_all(p, batch):
        return quantize(p["codebooks"], encoder.apply(p["encoder"], batch))[0]

    codes = np.concatenate([np.asarray(encode_all(params, x[s:s + 4096])) for s in range(0, n, 4096)])
    return codes.astype(np.int32), figures


def dedup_codes(codes: np.ndarray, seed: int = 0) -> np.ndarray:
    """[n, L] -> [n, L + 1]: the last column numbers the items sharing the same L codes (0, 1, ...)
    in a seeded order, so every item's sequence is unique."""
    order = np.random.default_rng(seed).permutation(len(codes))
    extra = np.zeros(len(codes), np.int32)
    seen: dict[tuple, int] = {}
    for i in order:
        key = tuple(codes[i].tolist())
        extra[i] = seen.get(key, 0)
        seen[key] = extra[i] + 1
    return np.concatenate([codes, extra[:, None]], axis=1).astype(np.int32)


def code_stats(codes: np.ndarray, codebook_size: int) -> dict:
    """Usage per level (distinct codes / K and perplexity), collisions before the extra code, and
    the prefix tree's nodes and fan-out per depth. `codes` is [n, L] or [n, L + 1]."""
    n, depth = codes.shape
    levels = []
    for level in range(depth):
        counts = np.bincount(codes[:, level])
        p = counts[counts > 0] / n
        levels.append({"used": int((counts > 0).sum()), "of": codebook_size,
                       "perplexity": float(np.exp(-(p * np.log(p)).sum()))})
    tree = []
    for d in range(1, depth + 1):
        prefixes, parents = np.unique(codes[:, :d], axis=0), np.unique(codes[:, :d - 1], axis=0) if d > 1 else np.zeros((1, 0))
        tree.append({"depth": d, "nodes": int(len(prefixes)), "mean_fanout": float(len(prefixes) / max(len(parents), 1))})
    return {"items": int(n), "levels": levels, "tree": tree}


def collision_stats(codes: np.ndarray) -> dict:
    """Items that share all their codes with another item (before the extra code)."""
    _, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    per_item = counts[inverse.ravel()]
    return {"colliding_items": int((per_item > 1).sum()), "collision_rate": float((per_item > 1).mean()),
            "max_group": int(counts.max()), "unique_prefixes": int(len(counts))}


def largest_groups(codes: np.ndarray, n: int = 5) -> list[int]:
    """Sizes of the n largest groups of items sharing all their codes, largest first."""
    _, counts = np.unique(codes, axis=0, return_counts=True)
    return [int(c) for c in np.sort(counts)[::-1][:n]]

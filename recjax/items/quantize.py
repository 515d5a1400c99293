"""Item embeddings -> L codes of K values each, plus the code that makes colliding items distinct.

- `rq_kmeans`: residual k-means (GRID's / MiniOneRec's RQ-KMeans): level l clusters the residual
  left by levels < l.
- `rq_vae`: TIGER's RQ-VAE in JAX: an MLP encoder to a latent, L residual codebooks (initialised by
  k-means on the first batch of residuals, as TIGER does), an MLP decoder; loss = reconstruction +
  codebook loss + beta * commitment, straight-through gradients.
- `hierarchical_kmeans`: k-means inside each parent cluster (a prefix tree; How to Index's
  collaborative indexing clusters the co-occurrence graph this way).
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


def rq_kmeans(x: np.ndarray, levels: int, codebook_size: int, seed: int = 0) -> np.ndarray:
    """[n, levels] int32 codes of residual k-means."""
    residual = x.astype(np.float32).copy()
    codes = np.zeros((len(x), levels), np.int32)
    for level in range(levels):
        centroids, assign = _kmeans(residual, codebook_size, seed + level)
        codes[:, level] = assign
        residual = residual - centroids[assign]
    return codes


def hierarchical_kmeans(x: np.ndarray, levels: int, codebook_size: int, seed: int = 0) -> np.ndarray:
    """[n, levels] int32 codes: level l splits each level-(l-1) cluster into <= codebook_size."""
    codes = np.zeros((len(x), levels), np.int32)
    groups = [np.arange(len(x))]
    for level in range(levels):
        next_groups = []
        for members in groups:
            if len(members) <= 1:
                next_groups.append(members)
                continue
            _, assign = _kmeans(x[members], codebook_size, seed + level)
            codes[members, level] = assign
            next_groups.extend(members[assign == c] for c in np.unique(assign))
        groups = next_groups
    return codes


def rq_vae(x: np.ndarray, levels: int, codebook_size: int, seed: int = 0, *, latent_dim: int = 32,
           hidden: tuple[int, ...] = (256, 128), beta: float = 0.25, steps: int = 3000, batch_size: int = 1024,
           learning_rate: float = 1e-3, log=None) -> tuple[np.ndarray, dict]:
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

    @jax.jit
    def encode_all(p, batch):
        return quantize(p["codebooks"], encoder.apply(p["encoder"], batch))[0]

    codes = np.concatenate([np.asarray(encode_all(params, x[s:s + 4096])) for s in range(0, n, 4096)])
    return codes.astype(np.int32), {"reconstruction_loss": float(recon), "vq_loss": float(vq), "steps": steps}


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

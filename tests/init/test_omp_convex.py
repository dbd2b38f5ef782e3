"""``omp``, ``convex`` and ``multivariate``: parity with a reference OMP, hull and sampling checks."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from conftest import GERMAN, tiny_llama

import tokenswap
from tokenswap.errors import TokenswapError
from tokenswap.init import InitContext, get_method, resolve_options
from tokenswap.init.common import fit_normal, piece_means
from tokenswap.init.convex import ConvexOptions
from tokenswap.init.multivariate import MultivariateOptions
from tokenswap.init.omp import OmpNorm, OmpOptions, batched_omp
from tokenswap.vocab.pair import Provenance


def reference_omp(y: np.ndarray, atoms: np.ndarray, k: int) -> np.ndarray:
    """Textbook OMP, one target: dense coefficients (N,) with at most k non-zeros."""
    norms = np.linalg.norm(atoms, axis=1)
    residual, chosen, coef = y.copy(), [], np.zeros(0)
    for _ in range(k):
        score = np.abs(atoms @ residual) / norms
        score[chosen] = -1
        best = int(score.argmax())
        if score[best] <= 1e-9 * np.linalg.norm(y):
            break
        chosen.append(best)
        coef = np.linalg.lstsq(atoms[chosen].T, y, rcond=None)[0]
        residual = y - atoms[chosen].T @ coef
    dense = np.zeros(len(atoms))
    dense[chosen] = coef
    return dense


def dense_codes(idx: torch.Tensor, coef: torch.Tensor, n: int) -> np.ndarray:
    out = np.zeros((idx.shape[0], n))
    for b in range(idx.shape[0]):
        np.add.at(out[b], idx[b].numpy(), coef[b].numpy())
    return out


# ----------------------------------------------------------------------------- OMP


@pytest.mark.parametrize("shape", [(40, 12, 5), (90, 30, 16), (25, 25, 25)])
def test_batched_omp_matches_reference(shape):
    n_atoms, dim, k = shape
    g = torch.Generator().manual_seed(n_atoms)
    atoms = torch.randn(n_atoms, dim, generator=g, dtype=torch.float64)
    targets = torch.randn(17, dim, generator=g, dtype=torch.float64)
    idx, coef = batched_omp(targets, atoms, k, candidates=None, batch=5)
    got = dense_codes(idx, coef, n_atoms)
    for b in range(len(targets)):
        want = reference_omp(targets[b].numpy(), atoms.numpy(), k)
        np.testing.assert_allclose(got[b], want, atol=1e-5, rtol=0)


def test_candidates_covering_all_atoms_is_plain_omp():
    g = torch.Generator().manual_seed(1)
    atoms, targets = torch.randn(50, 10, generator=g), torch.randn(8, 10, generator=g)
    a = dense_codes(*batched_omp(targets, atoms, 6, candidates=None), 50)
    b = dense_codes(*batched_omp(targets, atoms, 6, candidates=50), 50)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_omp_recovers_known_sparse_combination():
    g = torch.Generator().manual_seed(3)
    atoms = torch.randn(200, 64, generator=g, dtype=torch.float64)
    truth = torch.zeros(4, 200, dtype=torch.float64)
    for row in range(4):
        ids = torch.randperm(200, generator=g)[:6]
        truth[row, ids] = torch.randn(6, generator=g, dtype=torch.float64) + 2.0
    # exact OMP (candidates=None); screening to the top first correlations can miss an atom
    # with a small coefficient, which is the documented price of `omp_candidates`
    idx, coef = batched_omp(truth @ atoms, atoms, 16, candidates=None)
    np.testing.assert_allclose(dense_codes(idx, coef, 200), truth.numpy(), atol=1e-8)
    assert ((coef != 0).sum(1) == 6).all()  # stops once the residual is exhausted


def test_omp_with_donor_reconstructs_in_source_space(pair, source_matrix):
    # A donor space that is an injective linear image of the source (rank 16): with k = 16 OMP
    # fits every donor vector exactly, and a combination that is exact in the donor space is
    # exact in the source space too, so rows must equal the true mix of shared tokens.
    g = torch.Generator().manual_seed(5)
    truth_src = source_matrix.double()
    lift = torch.randn(16, 24, generator=g, dtype=torch.float64)
    exact = pair.ids_with(Provenance.EXACT)
    composed = pair.ids_with(Provenance.COMPOSED)
    shared_src = torch.tensor([pair.pieces[i][0] for i in exact])
    donor = torch.zeros(len(pair), 24, dtype=torch.float64)
    donor[torch.as_tensor(exact)] = truth_src[shared_src] @ lift
    mix = torch.zeros(len(composed), len(exact), dtype=torch.float64)
    for row in range(len(composed)):
        mix[row, torch.randperm(len(exact), generator=g)[:3]] = torch.rand(3, generator=g,
                                                                           dtype=torch.float64)
    donor[torch.as_tensor(composed)] = mix @ donor[torch.as_tensor(exact)]
    ctx = InitContext(donor=donor.float(), options=OmpOptions(omp_k=16))
    result = get_method("omp").fn(source_matrix, pair, ctx)
    expected = (mix @ truth_src[shared_src]).float()
    torch.testing.assert_close(result.matrix[torch.as_tensor(composed)], expected,
                               atol=2e-2, rtol=0)  # float32 donor, conditioning
    assert (result.provenance[composed] == Provenance.COMPOSED).all()
    for tid in exact[:10]:
        torch.testing.assert_close(result.matrix[tid], source_matrix[pair.pieces[tid][0]])


def test_omp_tokens_without_donor_vector_fall_back_to_mean(pair, source_matrix):
    g = torch.Generator().manual_seed(6)
    donor = torch.randn(len(pair), 8, generator=g)
    composed = pair.ids_with(Provenance.COMPOSED)
    blank = composed[:5]
    donor[torch.as_tensor(blank)] = 0  # no vector
    result = get_method("omp").fn(source_matrix, pair, InitContext(donor=donor))
    means, _ = piece_means(source_matrix, pair)
    torch.testing.assert_close(result.matrix[torch.as_tensor(blank)], means[torch.as_tensor(blank)])
    assert (result.provenance[blank] == Provenance.FALLBACK).all()
    assert (result.provenance[composed[5:]] == Provenance.COMPOSED).all()
    assert torch.isfinite(result.matrix).all()


def test_omp_donor_size_mismatch_is_a_clear_error(pair, source_matrix):
    donor = torch.randn(len(pair) - 3, 8)
    with pytest.raises(TokenswapError, match="donor .* target vocabulary"):
        get_method("omp").fn(source_matrix, pair, InitContext(donor=donor))


def test_omp_without_donor_or_corpus_is_a_clear_error(pair, source_matrix):
    with pytest.raises(TokenswapError, match="--donor.*--corpus"):
        get_method("omp").fn(source_matrix, pair, InitContext())


def test_omp_without_donor_trains_the_fasttext_space_its_options_ask_for(pair, source_matrix,
                                                                        german_tokenizer):
    pytest.importorskip("gensim")
    ctx = InitContext(corpus=list(GERMAN), target_tokenizer=german_tokenizer,
                      options=OmpOptions(omp_k=4, aux_dim=8, aux_epochs=1))
    result = get_method("omp").fn(source_matrix, pair, ctx)
    (space,) = ctx.cache["auxiliary"].values()
    assert space.matrix.shape == (len(german_tokenizer), 8)
    assert torch.isfinite(result.matrix).all()


def test_omp_positive_and_norm_options(pair, source_matrix):
    g = torch.Generator().manual_seed(8)
    donor = torch.randn(len(pair), 12, generator=g)
    composed = torch.as_tensor(pair.ids_with(Provenance.COMPOSED))
    exact = pair.ids_with(Provenance.EXACT)
    overlap = source_matrix[[pair.pieces[t][0] for t in exact]]

    positive = get_method("omp").fn(source_matrix, pair, InitContext(
        donor=donor, options=OmpOptions(omp_k=4, omp_positive=True))).matrix
    # non-negative weights summing to one: every row inside the bounding box of the shared rows
    assert (positive[composed] >= overlap.min(0).values - 1e-5).all()
    assert (positive[composed] <= overlap.max(0).values + 1e-5).all()

    scaled = get_method("omp").fn(source_matrix, pair, InitContext(
        donor=donor, options=OmpOptions(omp_k=4, omp_norm=OmpNorm.MEAN))).matrix
    means, has_pieces = piece_means(source_matrix, pair)
    rows = composed[has_pieces[composed]]
    torch.testing.assert_close(scaled[rows].norm(dim=1), means[rows].norm(dim=1))

    with pytest.raises(TokenswapError, match="omp_norm must be one of free, mean"):
        resolve_options(get_method("omp"), {"omp_norm": "unit"})


# ----------------------------------------------------------------------------- convex


def test_convex_rows_lie_in_the_hull_of_their_support(pair, source_matrix):
    ctx = InitContext(seed=2)
    result = get_method("convex").fn(source_matrix, pair, ctx)
    w = ctx.cache["convex_weights"]
    assert not w.trained
    assert (w.weights >= 0).all()
    torch.testing.assert_close(w.weights.sum(1), torch.ones(len(w.new_ids)))
    rebuilt = torch.einsum("bs,bsh->bh", w.weights, source_matrix[w.support])
    torch.testing.assert_close(result.matrix[torch.as_tensor(w.new_ids)], rebuilt)
    # zero-shot weights sit on the token's own pieces only
    for row, tid in enumerate(w.new_ids[:20]):
        used = set(w.support[row][w.weights[row] > 0].tolist())
        assert used <= set(pair.pieces[tid])
    assert torch.isfinite(result.matrix).all()


def test_convex_is_seeded(pair, source_matrix):
    fn = get_method("convex").fn
    a = fn(source_matrix, pair, InitContext(seed=1)).matrix
    b = fn(source_matrix, pair, InitContext(seed=1)).matrix
    c = fn(source_matrix, pair, InitContext(seed=2)).matrix
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)


def test_convex_trains_under_no_grad(pair, source_matrix, german_tokenizer):
    # api.transfer is often called inside torch.no_grad() (inference code, benchmarks)
    ctx = InitContext(seed=0, corpus=GERMAN, target_tokenizer=german_tokenizer,
                      options=ConvexOptions(convex_steps=5, convex_batch=256))
    with torch.no_grad():
        get_method("convex").fn(source_matrix, pair, ctx)
    assert ctx.cache["convex_weights"].trained


def test_convex_trained_on_corpus_stays_convex(pair, source_matrix, german_tokenizer):
    ctx = InitContext(seed=0, corpus=GERMAN, target_tokenizer=german_tokenizer,
                      options=ConvexOptions(convex_steps=20, convex_batch=256))
    result = get_method("convex").fn(source_matrix, pair, ctx)
    w = ctx.cache["convex_weights"]
    assert w.trained and np.isfinite(w.final_loss)
    assert (w.weights >= 0).all()
    torch.testing.assert_close(w.weights.sum(1), torch.ones(len(w.new_ids)))
    assert (w.weights[:, -8:] > 0).any()  # the nearest neighbours take part after training
    rebuilt = torch.einsum("bs,bsh->bh", w.weights, source_matrix[w.support])
    torch.testing.assert_close(result.matrix[torch.as_tensor(w.new_ids)], rebuilt)


# ----------------------------------------------------------------------------- multivariate


def test_multivariate_is_finite_seeded_and_centred_on_pieces(pair, source_matrix):
    fn = get_method("multivariate").fn
    opts = MultivariateOptions(multivariate_scale=0.25)
    a = fn(source_matrix, pair, InitContext(seed=1, options=opts)).matrix
    b = fn(source_matrix, pair, InitContext(seed=1, options=opts)).matrix
    c = fn(source_matrix, pair, InitContext(seed=2, options=opts)).matrix
    assert torch.isfinite(a).all()
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
    composed = torch.as_tensor(pair.ids_with(Provenance.COMPOSED))
    means, _ = piece_means(source_matrix, pair)
    noise = (a - means)[composed].double()
    _, factor = fit_normal(source_matrix)
    cov = (factor @ factor.T).double() * 0.25
    assert abs(float(noise.mean())) < 0.05  # centred on the piece means
    np.testing.assert_allclose(noise.var(0).numpy(), cov.diagonal().numpy(), rtol=0.35)
    for tid in pair.ids_with(Provenance.EXACT)[:10]:
        torch.testing.assert_close(a[tid], source_matrix[pair.pieces[tid][0]])


def test_multivariate_default_is_close_to_mean_but_not_random(pair, source_matrix):
    a = get_method("multivariate").fn(source_matrix, pair, InitContext()).matrix
    m = get_method("mean").fn(source_matrix, pair, InitContext()).matrix
    r = get_method("random").fn(source_matrix, pair, InitContext()).matrix
    composed = torch.as_tensor(pair.ids_with(Provenance.COMPOSED))
    assert not torch.equal(a[composed], m[composed])
    torch.testing.assert_close(a[composed], m[composed], atol=0.02, rtol=0)
    assert (a - r)[composed].abs().mean() > 0.1


# ----------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def donor_dir(tmp_path_factory, german_tokenizer):
    path = tmp_path_factory.mktemp("donor")
    tiny_llama(len(german_tokenizer), seed=7).save_pretrained(path)
    german_tokenizer.save_pretrained(path)
    return path


@pytest.mark.parametrize("method,use_donor,use_corpus", [
    ("omp", True, False), ("omp", False, True), ("convex", False, False),
    ("convex", False, True), ("multivariate", False, False)])
def test_transfer_end_to_end(method, use_donor, use_corpus, tiny_model_dir, german_tokenizer,
                             donor_dir, tmp_path):
    if method == "omp" and use_corpus:
        pytest.importorskip("gensim")
    options = {"omp": {"omp_k": 8}, "convex": {"convex_steps": 10, "convex_batch": 128},
               "multivariate": {}}[method]
    corpus = tmp_path / "de.txt"
    corpus.write_text("\n\n".join(GERMAN * 3), encoding="utf-8")
    result = tokenswap.transfer(
        str(tiny_model_dir), german_tokenizer, method=method, out=tmp_path / "m",
        donor=str(donor_dir) if use_donor else None,
        corpus=str(corpus) if use_corpus else None, options=options)
    emb = result.bundle.model.get_input_embeddings().weight
    assert emb.shape[0] >= len(german_tokenizer) and torch.isfinite(emb).all()
    assert result.stats.input["exact"] > 0
    assert (tmp_path / "m" / "config.json").exists()


# ----------------------------------------------------------------------------- donor checkpoints


def test_donor_with_padded_embedding_rows_is_trimmed(german_tokenizer, tmp_path):
    # vocabularies rounded up to a multiple of 64: rows past the tokenizer are dropped
    tiny_llama(len(german_tokenizer) + 40, seed=3).save_pretrained(tmp_path)
    german_tokenizer.save_pretrained(tmp_path)
    matrix = tokenswap.api.donor_embeddings(str(tmp_path), german_tokenizer)
    assert matrix.shape == (len(german_tokenizer), 32)


def test_donor_with_added_tokens_beyond_its_embeddings_is_a_clear_error(german_tokenizer,
                                                                       tmp_path):
    # a tokenizer with added tokens whose checkpoint was never resized (a crash in peers)
    tok = copy.deepcopy(german_tokenizer)
    tok.add_tokens(["<extra_1>", "<extra_2>"])
    tiny_llama(len(german_tokenizer), seed=3).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    with pytest.raises(TokenswapError, match="tokenizer has .* tokens but the embedding matrix only"):
        tokenswap.api.donor_embeddings(str(tmp_path), tok)


def test_donor_of_another_tokenizer_is_a_clear_error(german_tokenizer, source_tokenizer,
                                                     tmp_path):
    tiny_llama(len(source_tokenizer), seed=3).save_pretrained(tmp_path)
    source_tokenizer.save_pretrained(tmp_path)
    with pytest.raises(TokenswapError, match="not trained with the target tokenizer"):
        tokenswap.api.donor_embeddings(str(tmp_path), german_tokenizer)

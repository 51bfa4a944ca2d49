#!/usr/bin/python3
"""Variational LDA baselines for `pserver train lda`, scored the way it scores itself.

Trains gensim's LdaModel (passes=20, alpha='auto', eta='auto') and scikit-learn's batch
LatentDirichletAllocation (max_iter=50) on a UCI bag-of-words corpus with every N-th document held out, then
computes held-out perplexity by document completion with each model's topics fixed: a test document's topic mix
is fitted by Gibbs sampling on its even-numbered tokens (alpha = 0.1) and its odd-numbered tokens are scored.
Needs Debian's python3-gensim and python3-sklearn. Usage: eng/lda-baselines.py DOCWORD [TOPICS] [HOLD_OUT]
"""
import sys, time
import numpy as np

def read_uci(path):
    with open(path) as f:
        d, w, _ = int(f.readline()), int(f.readline()), int(f.readline())
        docs = [[] for _ in range(d)]
        for line in f:
            doc, word, count = map(int, line.split())
            docs[doc - 1].extend([word - 1] * count)
    return docs, w

def completion_perplexity(phi, test, alpha=0.1, sweeps=50, burn_in=20, seed=7):
    rng = np.random.default_rng(seed)
    k = phi.shape[0]
    log_sum, scored = 0.0, 0
    for words in test:
        if len(words) < 2:
            continue
        fit, score = words[0::2], words[1::2]
        z = rng.integers(k, size=len(fit))
        counts = np.bincount(z, minlength=k).astype(float)
        theta = np.zeros(k)
        for sweep in range(sweeps):
            for i, w in enumerate(fit):
                counts[z[i]] -= 1
                p = (counts + alpha) * phi[:, w]
                z[i] = rng.choice(k, p=p / p.sum())
                counts[z[i]] += 1
            if sweep >= burn_in:
                theta += (counts + alpha) / (len(fit) + k * alpha)
        theta /= sweeps - burn_in
        log_sum += np.log(theta @ phi[:, score]).sum()
        scored += len(score)
    return float(np.exp(-log_sum / scored))

def main():
    path = sys.argv[1]
    topics = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    hold_out = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    docs, vocab = read_uci(path)
    train = [d for i, d in enumerate(docs) if i % hold_out != hold_out - 1]
    test = [d for i, d in enumerate(docs) if i % hold_out == hold_out - 1]
    tokens = sum(map(len, train))

    from gensim.models import LdaModel
    bows = [list(zip(*np.unique(d, return_counts=True))) for d in train]
    bows = [[(int(w), int(c)) for w, c in b] for b in bows]
    start = time.time()
    model = LdaModel(bows, num_topics=topics, id2word={i: str(i) for i in range(vocab)}, passes=20, alpha='auto', eta='auto', random_state=1)
    seconds = time.time() - start
    phi = model.get_topics()
    print(f"gensim LdaModel passes=20: perplexity {completion_perplexity(phi, test):.1f}, {20 * tokens / seconds:,.0f} tokens/s")

    from scipy.sparse import csr_matrix
    from sklearn.decomposition import LatentDirichletAllocation
    rows = [i for i, d in enumerate(train) for _ in d]
    matrix = csr_matrix((np.ones(tokens), (rows, [w for d in train for w in d])), shape=(len(train), vocab))
    start = time.time()
    lda = LatentDirichletAllocation(n_components=topics, max_iter=50, learning_method='batch', random_state=1).fit(matrix)
    seconds = time.time() - start
    phi = lda.components_ / lda.components_.sum(axis=1, keepdims=True)
    print(f"sklearn LatentDirichletAllocation max_iter=50: perplexity {completion_perplexity(phi, test):.1f}, {50 * tokens / seconds:,.0f} tokens/s")

main()

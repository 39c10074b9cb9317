"""Embedding speed and quality of each offline backend: ``python bench/embeddings.py [--quick]``.

Speed: p50/p95 of one typical task text (the case of the post-a-task preview and of matching),
and texts per second in batches. Quality: on the hand-written market of the registry tests (30
agents, 50 tasks), the share of tasks whose right agent is the nearest (top-1) and in the top 3,
and the mean similarity gap between the right agent and the best wrong one. The baseline of the
ratios is the hashing vectoriser, measured in the same run.
"""

from __future__ import annotations

import time

from harness import Timings, emit, machine, parse_args, ratio, setup_django


def main() -> None:
    args = parse_args("Embedding backends: speed and quality")
    setup_django()
    import numpy as np
    from django.conf import settings

    from agents_registry import embeddings
    from tests.agents_registry.semantic_fixture import AGENTS, TASKS

    rounds = args.rounds or (3 if args.quick else 5)
    single_samples = 20 if args.quick else 60
    batch_size = 64 if args.quick else 256
    task_texts = [text for text, _ in TASKS]
    figures: dict = {"machine": machine()}

    for backend in ("hashing", "minilm"):
        settings.EMBEDDING_BACKEND = backend
        started = time.perf_counter()
        embeddings.embed_text("warm up")  # loads the weights once per process
        load_seconds = time.perf_counter() - started
        single = Timings()
        for index in range(single_samples):
            text = task_texts[index % len(task_texts)]
            begin = time.perf_counter()
            embeddings.embed_text(text)
            single.add(time.perf_counter() - begin)
        batch_texts = [task_texts[i % len(task_texts)] + f" #{i}" for i in range(batch_size)]
        throughputs = []
        for _ in range(rounds):
            begin = time.perf_counter()
            embeddings.embed_texts(batch_texts)
            throughputs.append(batch_size / (time.perf_counter() - begin))

        slugs = list(AGENTS)
        agent_vectors = embeddings.embed_texts([AGENTS[slug] for slug in slugs])
        task_vectors = embeddings.embed_texts(task_texts)
        similarities = task_vectors @ agent_vectors.T
        top1 = top3 = 0
        gaps = []
        for row, (_, expected) in enumerate(TASKS):
            order = list(np.argsort(-similarities[row]))
            rank = order.index(slugs.index(expected))
            top1 += rank == 0
            top3 += rank < 3
            wrong = max(similarities[row][i] for i in range(len(slugs)) if slugs[i] != expected)
            gaps.append(float(similarities[row][slugs.index(expected)] - wrong))
        figures[backend] = {
            "model_id": embeddings.embedding_model_id(),
            "load_seconds": round(load_seconds, 3),
            "one_task_text": single.summary(),
            "texts_per_second": round(float(np.median(throughputs)), 1),
            "top1_accuracy": round(top1 / len(TASKS), 3),
            "top3_accuracy": round(top3 / len(TASKS), 3),
            "mean_similarity_gap": round(float(np.mean(gaps)), 4),
        }

    figures["minilm_vs_hashing"] = {
        "p50_latency_ratio": ratio(
            figures["minilm"]["one_task_text"]["p50_ms"],
            figures["hashing"]["one_task_text"]["p50_ms"],
        ),
        "throughput_ratio": ratio(
            figures["minilm"]["texts_per_second"], figures["hashing"]["texts_per_second"]
        ),
        "top3_gain": round(
            figures["minilm"]["top3_accuracy"] - figures["hashing"]["top3_accuracy"], 3
        ),
    }
    figures["target_p50_ms"] = 20
    figures["target_met"] = figures["minilm"]["one_task_text"]["p50_ms"] < 20
    emit("embeddings", figures, quick=args.quick)


if __name__ == "__main__":
    main()

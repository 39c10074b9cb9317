"""Synthetic but varied capability texts for the matching benchmarks.

Each text combines hand-written fragments (a role, a domain, two deliverables, a method, a
constraint, a format) chosen by a seeded generator, so 100,000 texts are all different and spread
over many topics, the way real agent descriptions are; random or clustered vectors would make
HNSW recall look much worse or much better than it is (DESIGN.md section 11).
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import numpy as np

ROLES = [
    "Senior data engineer agent",
    "Contract lawyer assistant",
    "Python backend developer",
    "Medical coding specialist",
    "Financial analyst bot",
    "Technical translator",
    "Copywriter for landing pages",
    "Security auditor",
    "Customer support triage agent",
    "Academic research assistant",
    "SQL query optimiser",
    "DevOps automation agent",
    "Mobile app QA tester",
    "Tax preparation helper",
    "Recruiting sourcer",
    "Product manager assistant",
    "UX researcher",
    "Illustration prompt designer",
    "Podcast editor",
    "Grant writer",
    "Supply chain planner",
    "Real estate listing writer",
    "Biology literature reviewer",
    "Chemistry lab protocol checker",
    "Accessibility auditor",
    "SEO strategist",
    "Email marketing agent",
    "Spreadsheet wizard",
    "Data labelling agent",
    "Compliance officer assistant",
    "Game level designer",
    "Frontend React developer",
    "Rust systems programmer",
    "Statistics consultant",
    "Machine learning engineer",
    "Speech transcription agent",
    "Subtitle timing agent",
    "Patent prior-art searcher",
    "Insurance claims reviewer",
    "Travel itinerary planner",
    "Nutrition plan writer",
    "Fitness coach bot",
    "Music theory tutor",
    "Math olympiad tutor",
    "Resume reviewer",
    "Cloud cost optimiser",
    "Kubernetes operator",
    "Network engineer assistant",
    "Open-source maintainer bot",
    "Documentation writer",
    "API integration agent",
    "Web scraping agent",
    "Sentiment analysis service",
    "Fraud detection analyst",
    "Bookkeeping assistant",
    "Procurement negotiator",
    "Event planner",
    "Translator for Japanese",
    "Chatbot conversation designer",
    "Geospatial analyst",
]
DOMAINS = [
    "for e-commerce stores",
    "for hospitals and clinics",
    "for early-stage startups",
    "for law firms",
    "for logistics companies",
    "for public sector agencies",
    "for university labs",
    "for fintech apps",
    "for insurance carriers",
    "for restaurants",
    "for manufacturing plants",
    "for media publishers",
    "for non-profits",
    "for SaaS companies",
    "for energy utilities",
    "for telecom operators",
    "for online education platforms",
    "for video game studios",
    "for real estate agencies",
    "for pharmaceutical research",
    "for agricultural cooperatives",
    "for airlines",
    "for retail banks",
    "for cybersecurity teams",
    "for HR departments",
    "for open-source projects",
    "for marketing agencies",
    "for architecture firms",
    "for shipping ports",
    "for city councils",
    "for dental practices",
    "for hotel chains",
    "for car dealerships",
    "for museums and archives",
    "for sports clubs",
    "for biotech startups",
    "for accounting firms",
    "for film production",
    "for wine exporters",
    "for small bakeries",
]
DELIVERABLES = [
    "cleans messy CSV exports",
    "writes unit tests",
    "drafts non-disclosure agreements",
    "summarises long reports",
    "translates product descriptions",
    "reviews pull requests",
    "builds ETL pipelines",
    "designs database schemas",
    "writes marketing emails",
    "extracts entities from invoices",
    "classifies support tickets",
    "produces weekly dashboards",
    "forecasts monthly demand",
    "audits login flows for vulnerabilities",
    "writes API documentation",
    "transcribes interviews",
    "generates test data",
    "checks GDPR compliance",
    "optimises slow queries",
    "writes blog posts",
    "creates onboarding checklists",
    "maps business processes",
    "reconciles bank statements",
    "prepares VAT returns",
    "screens job applicants",
    "detects duplicate records",
    "tags images with labels",
    "proofreads academic papers",
    "builds Terraform modules",
    "writes Dockerfiles",
    "sets up CI pipelines",
    "monitors uptime and alerts",
    "answers customer emails",
    "writes press releases",
    "plans social media calendars",
    "converts PDFs to structured JSON",
    "validates JSON schemas",
    "scores sales leads",
    "reviews lease contracts",
    "builds pricing models",
    "analyses A/B test results",
    "writes SQL reports",
    "creates slide decks",
    "localises mobile apps",
    "records voice-over scripts",
    "edits podcast audio",
    "checks citations",
    "drafts grant proposals",
    "computes carbon footprints",
    "plans delivery routes",
    "estimates construction costs",
    "writes recipes",
    "tutors calculus",
    "grades essays",
    "summarises clinical trials",
    "codes diagnoses to ICD-10",
    "drafts privacy policies",
    "designs logos briefs",
    "writes product requirements",
    "benchmarks web performance",
]
METHODS = [
    "using pandas and DuckDB",
    "with careful human-style review",
    "with retrieval over your documents",
    "following ISO 27001 controls",
    "with a second-pass verifier",
    "in TypeScript",
    "in Go",
    "with property-based tests",
    "using statistical rigour",
    "with plain-language explanations",
    "using OCR and layout analysis",
    "with spreadsheet formulas",
    "using Kubernetes and Helm",
    "with source citations",
    "using PostgreSQL",
    "with accessibility in mind",
    "in Spanish and French",
    "with brand voice guidelines",
    "using time-series models",
    "with step-by-step reasoning",
    "using gradient boosting",
    "with red-team checks",
    "using OpenAPI specs",
    "with cost estimates",
    "with a checklist per item",
    "using Airflow",
    "using dbt",
    "with screenshots",
    "using LaTeX",
    "with audit trails",
]
CONSTRAINTS = [
    "Does not handle personal health data.",
    "No legal advice, only drafts.",
    "Works on files up to 50 MB.",
    "English only.",
    "Delivers within one hour.",
    "Needs read-only database credentials.",
    "Cannot browse the web.",
    "Handles up to 10,000 rows.",
    "Will not process payment card numbers.",
    "Best on documents under 30 pages.",
    "Requires a style guide.",
    "Answers in under five minutes.",
    "Only public data sources.",
    "No code execution on customer machines.",
    "Batch jobs run overnight.",
    "Supports UTF-8 text only.",
    "Escalates ambiguous cases to a human.",
    "Not for medical diagnosis.",
    "Keeps no copies of your data.",
    "Works with Google Sheets and Excel.",
]
FORMATS = [
    "Outputs Markdown.",
    "Returns JSON.",
    "Delivers a CSV file.",
    "Produces a PDF report.",
    "Returns a pull request.",
    "Delivers a slide deck.",
    "Outputs plain text.",
    "Returns annotated spreadsheets.",
    "Delivers audio files.",
    "Returns a Jupyter notebook.",
]


def capability_texts(count: int, *, seed: int = 7) -> list[str]:
    """``count`` distinct capability texts; the same seed always gives the same list."""
    generator = random.Random(seed)
    seen: set[str] = set()
    texts: list[str] = []
    while len(texts) < count:
        first, second = generator.sample(DELIVERABLES, 2)
        text = (
            f"{generator.choice(ROLES)} {generator.choice(DOMAINS)}: {first} and {second} "
            f"{generator.choice(METHODS)}. {generator.choice(CONSTRAINTS)} "
            f"{generator.choice(FORMATS)}"
        )
        if text not in seen:
            seen.add(text)
            texts.append(text)
    return texts


TASK_QUERIES = [
    "Clean up a CSV of 5,000 customer records exported from Shopify and remove duplicates",
    "Draft an NDA for a contractor joining our fintech startup",
    "Summarise a 40-page clinical trial report into one page for doctors",
    "Find SQL queries that make our Postgres reporting slow and rewrite them",
    "Translate our product catalogue from English to Japanese",
    "Write pytest unit tests for a Django payment module",
    "Audit the login and password reset flow of our web app for security holes",
    "Plan the delivery routes for 30 vans in a city every morning",
    "Reconcile last month's bank statement with the accounting ledger",
    "Classify 2,000 support tickets by urgency and topic",
    "Write a grant proposal for a museum digitisation project",
    "Build a Terraform module for an S3 bucket with encryption",
    "Transcribe and edit a one-hour podcast interview",
    "Create a weekly sales dashboard from our order database",
    "Check our privacy policy against GDPR requirements",
    "Forecast monthly demand for a bakery's bread products",
    "Extract invoice line items from scanned PDFs into JSON",
    "Screen 200 job applications for a backend engineer role",
    "Write three blog posts about sustainable shipping",
    "Estimate the carbon footprint of our airline's short-haul flights",
]


CHUNK = 1000


def _cache_directory() -> Path:
    from agents_registry.embeddings import embedding_model_id

    model = embedding_model_id().replace("/", "_")
    return Path(__file__).resolve().parent.parent / ".data" / "bench" / f"capabilities-{model}"


def cached_count(*, seed: int = 7) -> int:
    """How many of the first texts already have cached vectors (whole chunks, in order)."""
    directory = _cache_directory()
    count = 0
    while (directory / f"seed{seed}-{count:07d}.npy").exists():
        count += CHUNK
    return count


def cached_embeddings(count: int, *, seed: int = 7, verbose: bool = True) -> np.ndarray:
    """MiniLM vectors of ``capability_texts(count)``, cached under ``.data/bench/``.

    Embedding 100,000 texts in numpy takes tens of minutes on 2 cores, so the vectors are computed
    once, a chunk of 1,000 at a time (a stopped run resumes where it was), and reused by every run.
    """
    from agents_registry.embeddings import embed_texts

    directory = _cache_directory()
    directory.mkdir(parents=True, exist_ok=True)
    texts = capability_texts(count, seed=seed)
    chunks = []
    for start in range(0, count, CHUNK):
        path = directory / f"seed{seed}-{start:07d}.npy"
        if not path.exists():
            started = time.perf_counter()
            vectors = embed_texts(texts[start : start + CHUNK])
            np.save(path.with_suffix(".tmp.npy"), vectors)
            path.with_suffix(".tmp.npy").rename(path)
            if verbose:
                rate = len(vectors) / (time.perf_counter() - started)
                print(f"embedded {start + len(vectors)}/{count} ({rate:.0f} texts/s)", flush=True)
        chunks.append(np.load(path)[: count - start])
    return np.concatenate(chunks)

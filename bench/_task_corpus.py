"""Task texts of many topics for ``bench/routing.py``: each topic combines hand-written verbs,
objects and qualifiers, so the texts of one topic vary in wording but stay about one kind of work.
Deterministic for a seed; no text repeats within a topic."""

from __future__ import annotations

import itertools
import random

TOPICS: dict[str, tuple[list[str], list[str], list[str]]] = {
    "legal_translation": (
        ["Translate", "Render in English", "Produce an English version of", "Translate faithfully"],
        [
            "a German commercial lease",
            "a French employment contract",
            "a Spanish supplier agreement",
            "an Italian non-disclosure agreement",
            "the Dutch terms and conditions of a web shop",
            "a Portuguese distribution contract",
            "the articles of association of a GmbH",
            "a Polish share purchase agreement",
        ],
        [
            "keeping the clause numbering",
            "for our legal team",
            "with defined terms kept consistent",
            "before the signing on Friday",
            "marking any ambiguous clauses",
        ],
    ),
    "sql": (
        [
            "Write a PostgreSQL query that",
            "Fix the SQL that",
            "Optimise the query that",
            "Write SQL that",
        ],
        [
            "reports monthly revenue per customer",
            "finds duplicate customer records by email",
            "ranks products by weekly sales with a window function",
            "joins orders to invoices and shipments",
            "walks an employee management hierarchy recursively",
            "computes churn by signup cohort",
            "lists the top suppliers by late deliveries",
            "counts active users per day from the events table",
        ],
        [
            "on a table of fifty million rows",
            "without double counting refunds",
            "and explain the indexes it needs",
            "for the finance dashboard",
            "returning results in under a second",
        ],
    ),
    "poetry": (
        ["Write", "Compose", "Draft", "Create"],
        [
            "a sonnet about the sea at dawn",
            "a short rhyming poem for a wedding toast",
            "a haiku sequence about autumn leaves",
            "a free verse poem on leaving home",
            "a limerick about a forgetful cat",
            "an elegy for a childhood friend",
            "a ballad about a lighthouse keeper",
            "a children's poem about counting stars",
        ],
        [
            "with vivid imagery",
            "in a melancholy tone",
            "that can be read aloud in a minute",
            "with an unexpected last line",
            "using simple words",
        ],
    ),
    "tax": (
        ["Explain", "Work out", "Summarise", "Advise on"],
        [
            "the VAT treatment of digital services sold to EU consumers",
            "how a freelancer deducts home office costs",
            "the capital gains tax on selling a rental flat",
            "withholding tax on dividends paid to a foreign parent",
            "the tax residency rules for a remote worker",
            "depreciation of company vehicles",
            "the deadline and penalties for late income tax returns",
            "how stock options are taxed at exercise",
        ],
        [
            "for a small business owner",
            "with a worked numerical example",
            "citing the relevant rules",
            "in plain language",
            "for the current tax year",
        ],
    ),
    "python_debugging": (
        ["Debug", "Fix", "Find the cause of", "Investigate"],
        [
            "a Python script that leaks memory when parsing large CSV files",
            "a Django view that raises a KeyError on some requests",
            "an asyncio program that hangs after a few minutes",
            "a pandas groupby that returns the wrong totals",
            "a flaky pytest test that fails one run in ten",
            "a Celery task that runs twice",
            "a Flask app that returns 500 behind nginx",
            "a numpy calculation that overflows silently",
        ],
        [
            "and add a regression test",
            "and explain the root cause",
            "with a minimal patch",
            "on Python 3.12",
            "without changing the public interface",
        ],
    ),
    "marketing_copy": (
        ["Write", "Draft", "Create", "Polish"],
        [
            "a product launch email for a new running shoe",
            "landing page copy for a budgeting app",
            "five ad headlines for a coffee subscription",
            "a LinkedIn post announcing our series A",
            "a product description for a handmade leather wallet",
            "a newsletter for an eco-friendly cleaning brand",
            "a slogan for a boutique hotel",
            "social media captions for a bakery opening",
        ],
        [
            "in a playful tone",
            "aimed at young professionals",
            "with a clear call to action",
            "under one hundred words",
            "that avoids clichés",
        ],
    ),
    "recipes": (
        ["Create", "Write", "Adapt", "Develop"],
        [
            "a vegan lasagne recipe",
            "a gluten-free chocolate cake recipe",
            "a weeknight chicken curry recipe",
            "a recipe for sourdough bread",
            "a three-course dinner menu for six guests",
            "a high-protein breakfast recipe",
            "a recipe for homemade ramen broth",
            "a dessert using seasonal plums",
        ],
        [
            "with metric measurements",
            "that takes under thirty minutes",
            "for a beginner cook",
            "with a shopping list",
            "suitable for children",
        ],
    ),
    "medical_summary": (
        ["Summarise", "Explain", "Condense", "Write a patient-friendly summary of"],
        [
            "a discharge letter after knee replacement surgery",
            "the results of a full blood count",
            "a cardiology report describing atrial fibrillation",
            "a clinical trial paper on a new diabetes drug",
            "an MRI report of the lumbar spine",
            "the guidelines for managing high blood pressure",
            "a pathology report of a skin biopsy",
            "the side effects listed in a statin leaflet",
        ],
        [
            "for the patient's family",
            "highlighting what needs follow-up",
            "in under two hundred words",
            "avoiding medical jargon",
            "with the key numbers kept",
        ],
    ),
    "math_proofs": (
        ["Prove", "Give a rigorous proof that", "Show", "Write a proof that"],
        [
            "there are infinitely many primes",
            "the square root of two is irrational",
            "every bounded monotone sequence converges",
            "the sum of the first n odd numbers is n squared",
            "a continuous function on a closed interval attains its maximum",
            "every finite group of prime order is cyclic",
            "the harmonic series diverges",
            "a tree with n vertices has n minus one edges",
        ],
        [
            "by induction",
            "by contradiction",
            "at the level of a first-year course",
            "with every step justified",
            "in LaTeX",
        ],
    ),
    "travel_planning": (
        ["Plan", "Put together", "Design", "Organise"],
        [
            "a five-day itinerary in Kyoto",
            "a two-week rail trip through Italy",
            "a family weekend in Copenhagen",
            "a hiking trip in the Scottish Highlands",
            "a budget backpacking route across Vietnam",
            "a honeymoon on the Amalfi coast",
            "a city break in Lisbon with museums",
            "a road trip along the Norwegian fjords",
        ],
        [
            "with daily costs",
            "for travellers with a toddler",
            "avoiding tourist crowds",
            "with public transport only",
            "including restaurant suggestions",
        ],
    ),
    "resume_editing": (
        ["Rewrite", "Edit", "Improve", "Tailor"],
        [
            "a software engineer's CV",
            "a cover letter for a nursing position",
            "a graduate's one-page resume",
            "the LinkedIn summary of a sales manager",
            "a career-change CV from teaching to UX design",
            "an executive biography for a board application",
            "the resume of a data analyst with five years of experience",
            "a CV for an academic postdoc application",
        ],
        [
            "to pass applicant tracking systems",
            "with quantified achievements",
            "for a role in finance",
            "to fit on one page",
            "in British English",
        ],
    ),
    "data_visualisation": (
        ["Design", "Build", "Create", "Sketch"],
        [
            "a dashboard of weekly sales by region",
            "a chart comparing energy use across buildings",
            "an interactive map of delivery times",
            "a visualisation of survey results by age group",
            "a time series plot of website traffic with anomalies",
            "a Sankey diagram of customer journeys",
            "a heatmap of support tickets by hour",
            "a scatter plot of price against rating for products",
        ],
        [
            "in matplotlib",
            "with accessible colours",
            "for a board presentation",
            "with clear labels and a legend",
            "using Vega-Lite",
        ],
    ),
}


def topic_texts(topic: str, count: int, *, seed: int) -> list[str]:
    verbs, objects, qualifiers = TOPICS[topic]
    combinations = list(itertools.product(verbs, objects, qualifiers))
    random.Random(f"{topic}:{seed}").shuffle(combinations)
    return [f"{verb} {thing} {qualifier}." for verb, thing, qualifier in combinations[:count]]


def corpus(per_topic: int, *, seed: int = 0) -> list[tuple[str, str]]:
    """``per_topic`` (topic, text) pairs of every topic (at most 160 distinct per topic)."""
    return [(topic, text) for topic in TOPICS for text in topic_texts(topic, per_topic, seed=seed)]

"""A sample catalog for the demo, written for this project and generated reproducibly.

Eight clearly different topics, forty items each: every item combines a
topic's formats, subjects and angles into a short descriptive text, the way a
shop or a media site describes what it offers.  No third-party data.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Topic:
    name: str
    formats: tuple[str, ...]
    subjects: tuple[str, ...]
    angles: tuple[str, ...]


TOPICS = (
    Topic(
        "astronomy",
        ("Guide", "Documentary", "Star atlas", "Lecture series", "Telescope kit"),
        (
            "the moons of Jupiter",
            "black holes",
            "the night sky in winter",
            "distant galaxies",
            "the Apollo missions",
            "comets and meteor showers",
            "exoplanets",
            "the life of stars",
        ),
        (
            "for backyard stargazers",
            "explained by astrophysicists",
            "with deep-space photographs",
            "for curious beginners",
            "from the latest space telescopes",
        ),
    ),
    Topic(
        "cooking",
        ("Cookbook", "Cooking class", "Recipe box", "Chef's masterclass", "Kitchen set"),
        (
            "Italian pasta",
            "slow-cooked stews",
            "sourdough bread",
            "Thai curries",
            "weeknight dinners",
            "French pastry",
            "grilled vegetables",
            "homemade dumplings",
        ),
        (
            "with seasonal ingredients",
            "for busy families",
            "from a Michelin-starred chef",
            "with step-by-step photos",
            "on a tight budget",
        ),
    ),
    Topic(
        "hiking",
        ("Trail guide", "Backpack", "Hiking boots", "Map set", "Expedition film"),
        (
            "alpine ridges",
            "coastal cliffs",
            "long-distance trails",
            "desert canyons",
            "national parks",
            "waterfall hikes",
            "mountain huts",
            "forest paths",
        ),
        (
            "for multi-day treks",
            "with elevation profiles",
            "waterproof and lightweight",
            "for families with children",
            "in every season",
        ),
    ),
    Topic(
        "jazz",
        ("Album", "Live recording", "Biography", "Vinyl box set", "Concert film"),
        (
            "bebop saxophone",
            "cool jazz trumpet",
            "piano trios",
            "big band swing",
            "modal improvisation",
            "vocal ballads",
            "Latin jazz rhythms",
            "smoky club sessions",
        ),
        (
            "remastered from the original tapes",
            "from a legendary night in New York",
            "with liner notes by critics",
            "for late-night listening",
            "featuring rare takes",
        ),
    ),
    Topic(
        "programming",
        ("Book", "Online course", "Workshop", "Handbook", "Video tutorial"),
        (
            "Python for data analysis",
            "database indexing",
            "functional programming",
            "web APIs",
            "compilers and interpreters",
            "concurrent systems",
            "machine learning basics",
            "testing software",
        ),
        (
            "with hands-on exercises",
            "for experienced developers",
            "from first principles",
            "with real-world projects",
            "for complete beginners",
        ),
    ),
    Topic(
        "gardening",
        ("Handbook", "Seed collection", "Tool set", "Planting calendar", "Garden tour"),
        (
            "vegetable beds",
            "climbing roses",
            "herb gardens",
            "composting",
            "fruit trees",
            "balcony containers",
            "wildflower meadows",
            "greenhouse growing",
        ),
        (
            "for small spaces",
            "through the seasons",
            "without chemicals",
            "for first-time growers",
            "from an award-winning garden",
        ),
    ),
    Topic(
        "football",
        ("Match replay", "Team jersey", "Training program", "Season review", "Player biography"),
        (
            "a cup final",
            "legendary strikers",
            "tactical formations",
            "youth academies",
            "goalkeeping drills",
            "derby rivalries",
            "world cup moments",
            "penalty shootouts",
        ),
        (
            "with expert commentary",
            "for weekend players",
            "from the stands",
            "in slow motion",
            "told by the coaches",
        ),
    ),
    Topic(
        "painting",
        ("Art book", "Watercolor set", "Painting course", "Museum catalog", "Oil paint kit"),
        (
            "impressionist landscapes",
            "portrait techniques",
            "abstract expressionism",
            "color theory",
            "Dutch masters",
            "urban sketching",
            "still life with light",
            "plein air painting",
        ),
        (
            "with full-page reproductions",
            "for beginners with a brush",
            "taught by working artists",
            "with professional pigments",
            "from a major retrospective",
        ),
    ),
)

ITEMS_PER_TOPIC = 40


def catalog(seed: int = 2026) -> list[tuple[int, str, str]]:
    """(item_id, topic, text) for every sample item; the same every time for a seed."""
    rng = random.Random(seed)
    items: list[tuple[int, str, str]] = []
    for t, topic in enumerate(TOPICS):
        combos = [(f, s, a) for f in topic.formats for s in topic.subjects for a in topic.angles]
        for k, (fmt, subject, angle) in enumerate(rng.sample(combos, ITEMS_PER_TOPIC)):
            items.append((100 * (t + 1) + k, topic.name, f"{fmt}: {subject}, {angle}."))
    return items

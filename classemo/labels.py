"""The label set: names, polarity and default valence/arousal, shared by data, models and analytics."""

from __future__ import annotations

from dataclasses import dataclass, field

# The paper's discrete set (Section 4): fear, anger, disgust, happy, sad, positive, neutral.
PAPER_LABELS: tuple[str, ...] = ("fear", "anger", "disgust", "happy", "sad", "positive", "neutral")

POLARITIES = ("positive", "negative", "neutral")

# Polarity of every label we know by name; custom label sets may add their own.
KNOWN_POLARITY: dict[str, str] = {
    "fear": "negative",
    "anger": "negative",
    "disgust": "negative",
    "happy": "positive",
    "sad": "negative",
    "positive": "positive",
    "neutral": "neutral",
    "surprise": "positive",
    "contempt": "negative",
    "bored": "negative",
    "confused": "negative",
    "engaged": "positive",
}

# Default (valence, arousal) in [-1, 1] for datasets without V/A annotation. Values for anger, fear, disgust,
# happy and sad are the pleasure/arousal coordinates of Russell & Mehrabian (1977, J. Res. Personality 11:273),
# table of emotion terms. "positive" (calm, engaged approval in a lesson) is our choice: clearly pleasant but
# less aroused than happy. Surprise and contempt follow the same table's "surprised" and "disdainful".
KNOWN_DEFAULT_VA: dict[str, tuple[float, float]] = {
    "fear": (-0.64, 0.60),
    "anger": (-0.51, 0.59),
    "disgust": (-0.60, 0.35),
    "happy": (0.81, 0.51),
    "sad": (-0.63, -0.27),
    "positive": (0.55, 0.25),
    "neutral": (0.0, 0.0),
    "surprise": (0.40, 0.67),
    "contempt": (-0.32, 0.06),
    "bored": (-0.35, -0.60),
    "confused": (-0.30, 0.30),
    "engaged": (0.45, 0.40),
}


@dataclass(frozen=True)
class LabelSet:
    """An ordered label list with polarity and default V/A; index i is class i everywhere."""

    names: tuple[str, ...]
    polarity: dict[str, str] = field(default_factory=dict)
    default_va: dict[str, tuple[float, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.names:
            raise ValueError("a label set needs at least one label")
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"duplicate labels in {list(self.names)}")
        polarity = {n: self.polarity.get(n, KNOWN_POLARITY.get(n)) for n in self.names}
        unknown = [n for n, p in polarity.items() if p is None]
        if unknown:
            raise ValueError(f"no polarity known for labels {unknown}; give one of {POLARITIES} for each")
        bad = {n: p for n, p in polarity.items() if p not in POLARITIES}
        if bad:
            raise ValueError(f"polarity must be one of {POLARITIES}, got {bad}")
        va = {n: tuple(self.default_va.get(n, KNOWN_DEFAULT_VA.get(n, (0.0, 0.0)))) for n in self.names}
        object.__setattr__(self, "polarity", polarity)
        object.__setattr__(self, "default_va", va)

    @classmethod
    def paper(cls) -> "LabelSet":
        return cls(PAPER_LABELS)

    def __len__(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise ValueError(f"label {name!r} is not in the label set {list(self.names)}") from None

    def to_list(self) -> list[dict]:
        """JSON form used by manifests and checkpoint configs."""
        return [
            {"name": n, "polarity": self.polarity[n], "valence": self.default_va[n][0], "arousal": self.default_va[n][1]}
            for n in self.names
        ]

    @classmethod
    def from_list(cls, items: list[dict] | list[str]) -> "LabelSet":
        if items and isinstance(items[0], str):
            return cls(tuple(items))
        return cls(
            tuple(d["name"] for d in items),
            {d["name"]: d["polarity"] for d in items if "polarity" in d},
            {d["name"]: (float(d["valence"]), float(d["arousal"])) for d in items if "valence" in d},
        )

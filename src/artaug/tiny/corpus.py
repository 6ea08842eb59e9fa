"""A small built-in text corpus for training the tiny models' tokenizers offline.

Art prompts, art-director critiques, JSON answers and grounding coordinates: the kinds of text the painter's
text encoders and the critic's language model see. Generated from fixed word lists in a fixed order, so the corpus
(and every tokenizer trained on it) is the same in every process.
"""

from __future__ import annotations

import itertools

SUBJECTS = [
    "a red fox in the snow",
    "an old lighthouse on a cliff",
    "a girl reading under a tree",
    "a bowl of ripe lemons",
    "a cat sleeping on a windowsill",
    "two dancers on an empty stage",
    "a mountain village at dawn",
    "a portrait of an elderly fisherman",
    "a glass vase with sunflowers",
    "a steam train crossing a bridge",
    "a couple walking on the beach",
    "a dragon over a castle",
    "a quiet street after rain",
    "a jazz band in a club",
    "a giraffe eating leaves",
    "a child flying a kite",
    "a sailboat on a calm lake",
    "a knight in silver armour",
    "a café terrace at night",
    "a field of lavender",
    "an astronaut on the moon",
    "a violin on a wooden table",
    "a forest path in autumn",
    "a city skyline at dusk",
    "a horse galloping through water",
    "a baker at work",
]
STYLES = [
    "oil painting",
    "watercolour",
    "digital art",
    "35mm photograph",
    "charcoal sketch",
    "ukiyo-e woodblock print",
    "impressionist style",
    "cinematic still",
    "studio portrait",
    "pencil drawing",
    "gouache illustration",
    "isometric render",
    "pastel on paper",
    "ink wash",
    "baroque painting",
    "art nouveau poster",
]
COLOURS = [
    "red",
    "orange",
    "yellow",
    "green",
    "blue",
    "indigo",
    "violet",
    "purple",
    "pink",
    "magenta",
    "cyan",
    "teal",
    "turquoise",
    "gold",
    "golden",
    "silver",
    "bronze",
    "copper",
    "amber",
    "crimson",
    "scarlet",
    "ochre",
    "umber",
    "sienna",
    "ivory",
    "beige",
    "white",
    "black",
    "grey",
    "gray",
    "charcoal",
    "navy",
    "olive",
    "emerald",
    "jade",
    "cobalt",
    "ultramarine",
    "vermilion",
    "lilac",
    "peach",
    "coral",
    "rust",
    "sepia",
    "pastel",
    "muted",
    "vivid",
]
LIGHTING = [
    "warm golden rim light",
    "soft diffuse window light",
    "harsh midday sun",
    "cool blue moonlight",
    "dramatic chiaroscuro",
    "backlit silhouettes",
    "volumetric god rays",
    "candlelight",
    "neon glow",
    "overcast even light",
    "low-key lighting",
    "high-key lighting",
    "golden hour glow",
    "blue hour twilight",
    "specular highlights",
    "deep crisp shadows",
    "underexposed sky",
    "overexposed highlights",
    "balanced exposure",
]
COMPOSITION = [
    "rule of thirds",
    "centered composition",
    "leading lines",
    "symmetrical framing",
    "low angle",
    "high angle",
    "bird's-eye view",
    "worm's-eye view",
    "close-up",
    "wide shot",
    "shallow depth of field",
    "bokeh background",
    "negative space",
    "diagonal composition",
    "foreground framing",
    "tilted horizon",
    "cropped at the edge",
    "golden ratio spiral",
    "layered depth",
    "strong silhouette",
    "clear focal point",
    "busy background",
]
REGIONS = [
    "the sky",
    "the left hand",
    "the right hand",
    "the face",
    "the eyes",
    "the background",
    "the foreground",
    "the water",
    "the window",
    "the hair",
    "the trees",
    "the horizon",
    "the shadows",
    "the text on the sign",
    "the fingers",
    "the reflection",
    "the clouds",
    "the road",
    "the building on the right",
    "the upper left corner",
]
DEFECTS = [
    "the hand has six fingers",
    "the face is distorted",
    "the text is illegible",
    "the horizon is tilted",
    "the eyes look in different directions",
    "the legs merge into the ground",
    "the sky is blown out",
    "the shadows contradict the light source",
    "the perspective is inconsistent",
    "there are extra limbs",
    "the edges are blurry",
    "the colours are muddy",
    "the scene is too dark",
    "the teeth are malformed",
]
REMARKS = [
    "Overall the image is pleasant but flat.",
    "The lighting does not match the mood of the prompt.",
    "Nothing should change; the painting already fulfils the prompt.",
    "Increase contrast in the midtones.",
    "The composition feels crowded; give the subject more room.",
    "Warm up the palette to suggest late afternoon.",
    "The atmosphere needs haze to separate the planes.",
    "Sharpen the details on the main subject.",
    "Don't change the background; it's already balanced.",
    "I'd move the viewpoint lower to add drama.",
    "It's beautiful, though the anatomy needs care.",
    "We'll keep the seed and repaint only two regions.",
]
# Characters a prompt or an answer may contain that plain English words rarely exercise.
EXTRA_TEXT = [
    "Café, naïve, façade, jalapeño, Ångström, straße, smørrebrød, crème brûlée, São Paulo, Zürich, Kraków.",
    "Quotes “like this” and ‘this’ — dashes – ellipsis… degrees 45° × 2 · bullets • € £ ¥ © ® ™ ± ½ ¼ ¾ µ §.",
    "ASCII: ! \" # $ % & ' ( ) * + , - . / : ; < = > ? @ [ \\ ] ^ _ ` { | } ~",
    "Digits 0 1 2 3 4 5 6 7 8 9 10 16 32 64 100 128 256 512 768 1000 1024 2048.",
    "Σ M_i v_i / (1 + Σ M_i), ratio 16:9, 3:2, 4:3, f/1.8, ISO 400, 1/250s, 85mm, 50% opacity, #ff8800.",
    "UPPER CASE WORDS, Title Case Words, camelCase, snake_case, kebab-case, path/to/file.png, https://example.org",
    # Every printable Latin-1 character, so names and words of most Western languages need no unk.
    " ".join(chr(code) for code in range(0xA1, 0x100) if code != 0xAD),
]


def _prompts() -> list[str]:
    # Walk the lists with co-prime strides so each subject meets several styles, colours and lights.
    prompts = []
    for i, subject in enumerate(SUBJECTS * 4):
        style = STYLES[(i * 3) % len(STYLES)]
        colour = COLOURS[(i * 7) % len(COLOURS)]
        other = COLOURS[(i * 11 + 5) % len(COLOURS)]
        light = LIGHTING[(i * 5) % len(LIGHTING)]
        comp = COMPOSITION[(i * 3 + 1) % len(COMPOSITION)]
        prompts.append(f"{subject}, {style}, {colour} and {other} palette, {light}, {comp}")
    return prompts


def _critiques() -> list[str]:
    lines = []
    for i, (region, defect) in enumerate(zip(REGIONS * 3, itertools.cycle(DEFECTS), strict=False)):
        light = LIGHTING[(i * 7) % len(LIGHTING)]
        colour = COLOURS[(i * 13) % len(COLOURS)]
        x0, y0 = (i * 37) % 500, (i * 53) % 500
        x1, y1 = x0 + 120 + (i * 29) % 380, y0 + 90 + (i * 31) % 400
        lines.append(f"In {region}, {defect}. Make it {colour} with {light}. {REMARKS[i % len(REMARKS)]}")
        lines.append(f"{region}({x0},{y0}),({x1},{y1}) should become {colour} {light}")
        box = f"[{x0 / 1000:.3f}, {y0 / 1000:.3f}, {x1 / 1000:.3f}, {y1 / 1000:.3f}]"
        lines.append(
            f'{{"edits": [{{"box": {box}, "prompt": "{region} in {colour} {light}", "reason": "{defect}"}}], '
            f'"global_prompt": null}}'
        )
        lines.append(f'[{{"bbox_2d": [{x0}, {y0}, {x1}, {y1}], "label": "{region}"}}]')
    return lines


def corpus() -> list[str]:
    """Every sentence of the built-in corpus, in a fixed order."""
    words = [" ".join(group) for group in (COLOURS, LIGHTING, COMPOSITION, REGIONS, STYLES)]
    return _prompts() + _critiques() + REMARKS + DEFECTS + words + EXTRA_TEXT


def rare_characters() -> str:
    """The non-ASCII and punctuation characters the corpus exercises; tokenizers must keep each without unk."""
    return "".join(sorted({c for line in EXTRA_TEXT for c in line if not (c.isalnum() and c.isascii()) and c != " "}))

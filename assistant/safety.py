"""Fixed safety handling (crisis, sourcing, personal dose) decided in code before retrieval."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel

from assistant import messages
from assistant.lexicon import normalize, substance_pattern

# The texts shown for each decision are in assistant/messages.py, with every other fixed text.
# A turn of the history that is one of them answered a stopped message.
FIXED_TEXTS: frozenset[str] = frozenset({messages.CRISIS_RESPONSE, messages.SOURCING_DECLINE,
                                         messages.PERSONAL_DOSE_DECLINE})


class SafetyDecision(BaseModel):
    """The fixed outcome for a message that must not go through retrieval and generation."""

    kind: Literal["crisis", "sourcing", "personal_dose"]
    message: str
    status: Literal["crisis", "declined"]
    # Which layer decided: the patterns below, or the semantic layer
    # (assistant/safety_semantic.py): its classifier on the whole message, on one of its
    # sentences or on the previous user turn joined to this one, or the message's nearest bank
    # expression. `score` is the classifier's probability or that expression's cosine.
    layer: Literal["pattern", "message", "sentence", "context", "nearest"] = "pattern"
    score: float | None = None


def decision(kind: Literal["crisis", "sourcing", "personal_dose"],
             layer: Literal["pattern", "message", "sentence", "context", "nearest"] = "pattern",
             score: float | None = None) -> SafetyDecision:
    """The decision of `kind`, carrying its one fixed text."""
    text = {"crisis": messages.CRISIS_RESPONSE, "sourcing": messages.SOURCING_DECLINE,
            "personal_dose": messages.PERSONAL_DOSE_DECLINE}[kind]
    return SafetyDecision(kind=kind, message=text, status="crisis" if kind == "crisis" else "declined",
                          layer=layer, score=score)


# --------------------------------------------------------------------------- normalisation

# Latin look-alikes from Cyrillic and Greek; NFKC keeps them distinct, so "kіll" with a
# Cyrillic "і" would otherwise slip past every pattern. Only used for matching.
_CONFUSABLES = str.maketrans({
    "а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "у": "y", "х": "x", "і": "i",
    "ј": "j", "ѕ": "s", "к": "k", "м": "m", "т": "t", "н": "h", "в": "b", "ӏ": "l",
    "α": "a", "ε": "e", "ο": "o", "ρ": "p", "ι": "i", "κ": "k", "ν": "v", "τ": "t",
    "υ": "u", "χ": "x",
})


def _normalize(text: str) -> str:
    return normalize(text).translate(_CONFUSABLES)


# ------------------------------------------------------------------------- shared pieces

_SUBST = substance_pattern()
# Things bought or grown that are not in the lexicon by name.
_DRUG_GENERIC = (
    r"(?<!\w)(?:drugs?|pills?|tabs?|blotters?|spores?|caps|capsules|crystals?|powder|"
    r"psychedelics?|hallucinogens?|cactus|cacti|root ?bark|mimosa|caapi|chacruna|"
    r"truffles?|grams?|an? ounce)(?!\w)"
)
_ADV = (
    r"(?:(?:really|so|very|still|now|totally|completely|badly|seriously|just|literally|"
    r"kind of|kinda|already|currently|actually|definitely|probably|basically|severely|"
    r"super|extremely|way|all|also|even|like|suddenly|again)\s+)*"
)
_NEG_BEFORE = r"(?<!not )(?<!n't )(?<!never )(?<!no longer )"
_IM = r"(?:i'm|im|i am)"
_DONT = r"(?:don't|dont|do not|no longer|never)"
_CANT = r"(?:can't|cant|cannot|can not|couldn't|couldnt)"
_SELF = r"(?:myself|my self|himself|herself|themselves|themself)"
# A person in the conversation (not "patients" or "participants", which mark a clinical
# question).
_PERSON = (
    r"(?:\bi\b|\bi'm\b|\bim\b|\bi've\b|\bmy\s+(?!(?:patients?|clients?|participants?)\b)"
    r"[a-z]+|\bhe\b|\bshe\b|\bhe's\b|\bshe's\b|\bthey're\b|\bsomeone\b|\bsomebody\b|"
    r"\bsome one\b|\ba friend\b|\bour friend\b|\bmy friend\b|\bwe\b|\bwe're\b|"
    r"\bthis (?:guy|girl|person|dude)\b|\bhis\b|\bher\b)"
)
_CLAUSE = r"[^.?!;\n]"


class _LazyRe:
    """A regex compiled on first use: the patterns embed the whole substance lexicon and
    compiling them at import would cost a noticeable fraction of a second."""

    def __init__(self, pattern: str) -> None:
        self._pattern = pattern
        self._compiled: re.Pattern[str] | None = None

    def search(self, text: str, pos: int = 0) -> re.Match[str] | None:
        if self._compiled is None:
            self._compiled = re.compile(self._pattern)
        return self._compiled.search(text, pos)


def _rx(*patterns: str) -> _LazyRe:
    return _LazyRe("|".join(f"(?:{p})" for p in patterns))


# ------------------------------------------------------------------------------ crisis

_SUICIDE_RE = _rx(
    # "kill myself", "end my life", "take my own life", "end it all": inherently first
    # person, so they count wherever they appear.
    r"\b(?:kill|killing|hang|hanging|shoot|shooting)\s+" + _SELF + r"\b",
    r"\b(?:end|ending|take|taking)\s+my\s+(?:own\s+)?life\b",
    # Someone else's life only with a verb that reports their intent ("he wants to end his
    # life"): "a way to end their life" or "clients thinking about ending their life" in a
    # question about screening is the clinical topic, and the semantic layer reads the rest.
    r"\b(?:he|she|they|my\s+[a-z]+)\s+(?:says\s+|said\s+|keeps\s+saying\s+)?"
    r"(?:(?:he|she|they)\s+)?(?:wants?|is\s+going|are\s+going|is\s+planning|plans?|"
    r"is\s+trying|tried|threatens?|threatened)\s+to\s+(?:end|take)\s+(?:his|her|their)\s+"
    r"(?:own\s+)?life\b",
    # Slang that stands for suicide itself ("kms", "unalive", "ctb" = catch the bus,
    # "sewerslide", "rope" as a verb); "10 kms" is a distance.
    r"(?<!\d)(?<!\d\s)\bkms\b",
    r"\bun-?aliv(?:e|ed|es|ing)\b",
    r"\bsewer\s*slide\b",
    r"\bctb\b",
    r"\b(?:gonna|going to|might|wanna|want to|about to|ready to|will)\s+(?:just\s+)?rope\b",
    r"\b(?:off|delete)\s+myself\b",
    r"\bend(?:ing)?\s+it\s+all\b",
    r"\b(?:commit|committing)\s+suicide\b",
    r"\bi\s+(?:just\s+|really\s+|honestly\s+)?(?:want|wanna|wish|need)\s+(?:to\s+)?die\b",
    r"\bi\s+wish\s+i\s+(?:was|were|could be)\s+dead\b",
    r"\bbetter\s+off\s+dead\b",
    r"\b" + _DONT + r"\s+(?:really\s+)?(?:want|wanna|wish)\s+(?:to\s+)?"
    r"(?:live|be alive|go on|keep going|keep living)\b",
    r"\b" + _DONT + r"\s+(?:really\s+)?(?:want|wanna)\s+(?:to\s+)?(?:be here|exist|wake up)"
    r"\s+(?:anymore|any more|tomorrow)\b",
    r"\bno\s+(?:point|reason)\s+(?:in\s+|to\s+)?(?:living|live|going on|being alive)\b",
    r"\btired\s+of\s+(?:living|being alive)\b",
    r"\b" + _CANT + r"\s+(?:go on|keep going|do this)\s+(?:anymore|any more)\b",
    r"\bwant\s+(?:it|everything)\s+(?:all\s+)?to\s+(?:end|be over)\b",
    r"\b" + _IM + r"\s+" + _ADV + r"suicidal\b",
    r"\bi(?:\s+feel|\s+felt|\s+have been feeling|'?ve been feeling|\s+keep feeling|"
    r"'?m feeling|\s+am feeling|\s+was feeling|'?ve felt|\s+have felt)\s+"
    + _ADV + r"suicidal\b",
    r"\b(?:i've|ive|i have)\s+been\s+" + _ADV + r"suicidal\b",
    r"(?:^|[.?!,;]\s*)(?:feeling|been feeling)\s+" + _ADV + r"suicidal\b",
    _NEG_BEFORE + r"\bsuicidal\s+(?:right now|tonight|today|at the moment|again)\b",
    r"\bi(?:\s+keep|\s+have|'ve|ve)?\s+(?:been\s+)?(?:having|have|get|getting|had)\s+"
    r"(?:some\s+|a lot of\s+|lots of\s+|constant\s+|frequent\s+|strong\s+)?"
    r"(?:suicidal\s+(?:thoughts|feelings|urges)|thoughts\s+(?:of|about)\s+"
    r"(?:suicide|killing myself|ending (?:it|my life)|dying))\b",
    r"\bi(?:\s+keep|\s+have|'ve|ve|\s+am|'m)?\s+(?:been\s+)?(?:thinking|thought)\s+"
    r"(?:about|of)\s+(?:suicide|dying|death|taking my life)\b",
    r"\bi(?:\s+am|'m|m)\s+(?:going|planning|about)\s+to\s+(?:die|overdose)\b",
    r"\b(?:want|going|gonna|plan(?:ning)?|try(?:ing)?)\s+to\s+overdose\s+on\s+purpose\b",
    r"\boverdos(?:e|ing)\s+on\s+purpose\b",
    r"\b(?:take|taking|swallow|swallowing)\s+all\s+(?:of\s+)?my\s+(?:pills|meds|medication)\b",
    r"\bmy\s+suicide\s+(?:note|plan)\b",
    r"\b(?:wrote|writing|written)\s+(?:a|my)\s+suicide\s+note\b",
    # Someone else at risk.
    r"\b(?:my\s+[a-z]+|he|she|they|someone|a friend)\s+(?:is|'s|are|'re|seems|sounds)\s+"
    + _ADV + r"suicidal\b",
    r"\b(?:says|said|keeps saying|is saying|talking about|talks about|threatening|threatened)"
    r"\s+(?:that\s+)?(?:he|she|they)?\s*(?:wants?\s+to\s+|is going to\s+|will\s+)?"
    r"(?:kill|killing|end|ending)\s+(?:" + _SELF + r"|(?:his|her|their)\s+life|it all)\b",
)

_SELF_HARM_RE = _rx(
    r"\b(?:want|wanna|going|gonna|plan|planning|need|urge|urges|tempted|thinking about|"
    r"thought about|feel like|trying|try|tried|starting|started)\s+(?:to\s+)?"
    r"(?:cut|burn|hurt|harm|injure|cutting|burning|hurting|harming|injuring)\s+" + _SELF + r"\b",
    r"\b(?:been|keep|kept|am|'m|m|still|started|start|stop|stopped)\s+" + _ADV
    + r"(?:cutting|burning|hurting|harming|injuring|starving)\s+" + _SELF + r"\b",
    r"\bi\s+" + _ADV + r"(?:cut|burned|burnt)\s+myself\b",
    r"\bi(?:\s+have been|'ve been|ve been|\s+am|'m|\s+keep|\s+started)?\s+"
    r"self[- ]?harm(?:ing)?\b",
    r"\b(?:urge|urges|want|wanting|going|tempted|thinking about)\s+(?:to\s+)?self[- ]?harm",
    r"\bmy\s+self[- ]?harm(?:ing)?\b",
)

# Acute states that mean an emergency is happening now. Each needs a verb form that puts
# the state in the present ("is seizing", "won't wake up"), and the medical-emergency
# patterns further need a person of the conversation as subject, so "How is serotonin
# toxicity managed?" or "Did participants have seizures?" are clinical questions.
_STATE = (
    r"(?:unconscious|unresponsive|not breathing|barely breathing|not responding|"
    r"non-?responsive|seizing|convulsing|fitting|overheating|burning up|collapsing|collapsed|"
    r"passing out|passed out|blacking out|fainting|turning blue|going blue|blue|"
    # "dying to know", "dying of cancer" (end-of-life care is a topic here) are not emergencies.
    r"foaming at the mouth|out cold|cold and clammy|"
    r"(?:dying|going to die|gonna die)(?!\s+(?:to|of|from|with|in)\b)|"
    r"losing consciousness|in and out of consciousness|shaking uncontrollably|"
    r"vomiting blood|throwing up blood|choking|struggling to breathe|"
    r"having (?:a |another )?(?:seizure|fit|convulsion|heart attack|stroke)s?|"
    r"having (?:trouble|difficulty|a hard time) breathing|"
    r"having (?:a |an )?" + _ADV + r"(?:bad|terrifying|horrible|awful) trip|"
    r"having (?:a )?panic attack)"
)
_BE = (
    r"(?:is|are|am|was|'s|'re|'m|s|re|m|keeps|keep|kept|started|starting|began|been|"
    r"seems|seem|looks|look|now)"
)
_EMERGENCY_STATE_RE = _LazyRe(
    _PERSON + _CLAUSE + r"{0,80}?\b" + _BE + r"\s+" + _ADV + _STATE + r"\b"
)
_EMERGENCY_RE = _rx(
    r"\b(?:overdosing|od'?ing)\b",
    r"\b(?:won't|wont|will not|can't|cant|cannot|couldn't)\s+(?:wake|rouse)\s+"
    r"(?:up|him|her|them|my\s+\w+)\b",
    r"\b(?:not|isn't|isnt)\s+waking\s+up\b",
    r"\b(?:stopped|stops|isn't|isnt|is not|not|wasn't|can't|cant|cannot)\s+breathing\b",
    r"\b(?:i|he|she|they|we)\s+" + _CANT + r"\s+breathe\b",
    r"\b(?:my|his|her|their)\s+(?:heart|chest|pulse)\b" + _CLAUSE
    + r"{0,25}?\b(?:racing|pounding|hurts|hurting|pains?|tight|beating|irregular|skipping|"
    r"stopped|fluttering)\b",
    r"\b(?:i|i'm|im)\s+(?:feel|am feeling|'m feeling|m feeling|think i'm|think i am|think i)"
    r"\s+(?:like\s+)?(?:i'm\s+|i am\s+|i'll\s+|i will\s+|i might\s+|i may\s+)?"
    r"(?:passing out|going to pass out|gonna pass out|about to pass out|pass out|"
    r"going to faint|gonna faint|fainting|"
    r"(?:dying|going to die|gonna die)(?!\s+(?:to|of|from|with|in)\b)|"
    r"having a heart attack|having a stroke|having a seizure|overdosing)\b",
    r"\b(?:about to|going to|gonna)\s+(?:pass out|faint|collapse)\b",
    r"\b(?:i|he|she|they|we|someone|somebody|friend|my\s+[a-z]+)\s+(?:just\s+|has\s+|have\s+|"
    r"had\s+|may have\s+|might have\s+|think\s+|accidentally\s+|probably\s+)*"
    r"(?:overdosed|od'?d)\b",
    r"\b(?:took|taken|swallowed|ate|eaten|had|did|done|snorted|drank)\s+(?:way\s+|far\s+|"
    r"much\s+|a lot\s+)?too\s+(?:much|many)\b",
    r"\bshould\s+(?:i|we)\s+(?:call|ring|go to|take (?:him|her|them) to)\s+(?:911|999|112|"
    r"000|an ambulance|the er|the hospital|emergency|a&e|the emergency room|poison control)",
)


_GENERIC_SUBJECT_RE = re.compile(
    r"(?:someone|somebody|some one|a friend|he|she|they|he's|she's|they're|"
    r"this (?:guy|girl|person|dude))\b"
)
_IF_BEFORE_RE = re.compile(r"\b(?:if|when|whenever|in case|once)\s*$")


def _emergency_state(text: str) -> bool:
    # "If someone is having a bad trip, what should sitters do?" asks about a situation;
    # "someone is having a seizure" reports one. Only a generic subject right after
    # "if/when" is treated as hypothetical: "what do I do if my friend is unconscious" is
    # still a crisis.
    pos = 0
    while (m := _EMERGENCY_STATE_RE.search(text, pos)) is not None:
        hypothetical = _IF_BEFORE_RE.search(text[max(0, m.start() - 12):m.start()])
        if not (hypothetical and _GENERIC_SUBJECT_RE.match(text, m.start())):
            return True
        pos = m.start() + 1
    return False


def _is_crisis(text: str) -> bool:
    return bool(
        _SUICIDE_RE.search(text)
        or _SELF_HARM_RE.search(text)
        or _EMERGENCY_RE.search(text)
        or _emergency_state(text)
    )


# ---------------------------------------------------------------------------- sourcing

# Asking for a way to do something (as opposed to asking about it).
_REQ = (
    r"(?:how\s+(?:do|can|could|would|should|might|to|does one|do you|did you|do people|"
    r"can you|can one|would one|do i|can i|should i)|where\s+(?:can|could|do|should|would|to|"
    r"might|is the best place to)|what'?s\s+the\s+(?:best|easiest|cheapest|safest|fastest)"
    r"\s+way\s+to|what\s+is\s+the\s+(?:best|easiest|cheapest|safest|fastest)\s+way\s+to|"
    r"(?:best|easiest|cheapest|safest|fastest)\s+way\s+to|i\s+want\s+to|i\s+wanna|"
    r"i'?d\s+like\s+to|i\s+would\s+like\s+to|i\s+need\s+to|i'?m\s+trying\s+to|"
    r"im\s+trying\s+to|trying\s+to|help\s+me|teach\s+me|tell\s+me\s+how|show\s+me\s+how|"
    r"explain\s+how\s+to|instructions|guide|tutorial|step[- ]by[- ]step|tips|"
    r"can\s+(?:i|you|we|one)|could\s+(?:i|you|we)|is\s+there\s+a\s+way\s+to|any\s+way\s+to|"
    r"looking\s+to|planning\s+to|going\s+to|gonna|who\s+(?:sells|can sell|will sell)|"
    r"anyone\s+(?:selling|sell|know where)|is\s+it\s+(?:possible|easy|hard|safe)\s+to)"
)
_BUY = (
    r"(?:buy|buying|purchase|purchasing|order|ordering|score|scoring|cop|get\s+hold\s+of|"
    r"get\s+my\s+hands\s+on|pick\s+up|sell|selling|ship|shipped|smuggle|bring\s+back)"
)
# Soft verbs: the same words ask about licensed access ("Can I get Spravato prescribed?").
_OBTAIN = (
    r"(?:get(?!\s+(?:off|rid|over|through|better|help|into|in(?:to)?\s+(?:a|the)\s+"
    r"(?:trial|study)|access|treated|treatment|prescribed|a\s+prescription|enrolled))|"
    r"obtain|obtaining|acquire|acquiring|source|sourcing|find|finding|access|procure)"
)
_GROW = r"(?:grow|growing|cultivate|cultivating|home[- ]?grow|culture|inoculate|inoculating)"
_MAKE = (
    r"(?:extract|extracting|isolate|isolating|purify|purifying|synthesi[sz]e|synthesi[sz]ing|"
    r"make(?!\s+(?:sure|certain|sense|it\s+(?:safe|safer|legal)|a\s+difference|an?\s+"
    r"appointment|up))|making(?!\s+(?:sure|sense))|cook|cooking|brew|brewing|manufacture|"
    r"manufacturing|produce|producing|prepare|preparing|milk|milking|press|pressing)"
)
_OBJECT = r"(?:" + _SUBST + r"|" + _DRUG_GENERIC + r"|\bit\b|\bthem\b)"
# Determiners and quantities allowed between a verb and its object. Verbs must take the
# drug as their direct object ("get ibogaine", "grow my own mushrooms"), so that "get
# addicted to ketamine" or "prepare a client for an MDMA session" are not requests.
_FILL = (
    r"\s+(?:(?:some|any|a|an|the|real|pure|good|legit|cheap|more|my|our|your|own|"
    r"high[- ]quality|quality|homemade|fresh|dried|liquid|few|couple|bit|hold|of|"
    r"\d+\s*(?:g|grams?|mg|ml|tabs?|pills?|hits?)|grams?|gram|ounce|bag|bottle|vial|sheet|"
    r"tab|pill|capsule|batch|kilo)\s+){0,5}"
)
_GROW_OBJECT = (
    r"(?:" + _SUBST + r"|\bspores?\b|\bcactus\b|\bcacti\b|\bcubensis\b|\bmycelium\b|"
    r"\bmy own\b|\bcaapi\b|\bchacruna\b|\bmimosa\b)"
)

_SOURCING_STRONG_RE = _rx(
    r"\bdark\s*(?:web|net)\b|\bdarknet\b|\bonion\s+(?:site|link|market)|\.onion\b|"
    r"\bsilk\s+road\b|\bdarknet\s+market",
    r"\bspore\s+(?:vendors?|syringes?|prints?|kits?|suppliers?|shops?)\b",
    r"\b(?:grow|growing)\s+(?:kit|kits|tek|box|tent|guide|instructions|tutorial)\b",
    r"\b(?:pf|uncle ben'?s)\s+tek\b",
    # Cultivation gear and stages that only a home grow has.
    r"\b(?:monotubs?|spore\s+syringes?|grain\s+spawn|(?:shotgun\s+)?fruiting\s+chambers?)\b",
    r"\b(?:extraction|synthesis|synthetic|cooking|growing|grow)\s+(?:tek|route|routes|"
    r"pathway|procedure|recipe|instructions|steps|method|protocol|guide)\b" + _CLAUSE
    + r"{0,60}?" + _SUBST,
    _SUBST + _CLAUSE + r"{0,40}?\b(?:extraction|synthesis|synthetic)\s+(?:tek|route|routes|"
    r"pathway|procedure|recipe|instructions|steps|method)\b",
    r"\b(?:recipe|route|procedure|instructions)\s+(?:for|to)\s+(?:synthesi|making|make|cook|"
    r"extract)" + _CLAUSE + r"{0,60}?" + _SUBST,
    r"\bprecursors?\b" + _CLAUSE + r"{0,60}?" + _SUBST,
    _SUBST + _CLAUSE + r"{0,30}?\bprecursors?\b",
    r"\b(?:drug\s+)?dealers?\b" + _CLAUSE + r"{0,40}?\b(?:near|in|for|who)\b",
    r"\b(?:find|finding|contact)\s+(?:a|my)\s+(?:dealer|plug)\b",
    r"\bwhere\s+to\s+score\b",
    r"\b(?:who|anyone|anybody|someone)\s+(?:sells|can sell|will sell|is selling|selling)\b"
    + _CLAUSE + r"{0,40}?" + _OBJECT,
    r"\b(?:vendors?|suppliers?|sellers?|shops?|sites?|websites?|markets?)\s+(?:for|of|that\s+"
    r"sells?|selling|to\s+(?:buy|order))\b" + _CLAUSE + r"{0,40}?" + _OBJECT,
    r"\b(?:best|reliable|trusted|legit|good)\s+(?:vendors?|suppliers?|sources?|sellers?|"
    r"shops?|sites?|websites?)\b",
    r"\bwithout\s+(?:a\s+|any\s+)?(?:prescription|script|doctor)\b",
)

# Words that make "get/obtain/find/access" a question about licensed, legal access.
_LEGAL_ACCESS = _LazyRe(
    r"\b(?:prescri\w*|pharmac\w*|rems|insurance|insurer|covered|medicare|medicaid|trials?|"
    r"stud(?:y|ies)|clinic|clinics|clinical|programs?|programmes?|service\s+cent(?:er|re)s?|"
    r"services|licensed|licensing|legal|legally|lawful(?:ly)?|compassionate|expanded\s+access|"
    r"right\s+to\s+try|enrol\w*|doctors?|physicians?|psychiatrists?|providers?|"
    r"facilitators?|therap\w*|treatment|treated|sessions?|retreats?|centers?|centres?|"
    r"hospitals?|approved|approval|regulated|medical(?:ly)?|telehealth|referral|refer|"
    r"infusions?|injections?|nasal\s+spray)\b"
)
_ILLEGAL_MARKER = _LazyRe(
    r"\bwithout\s+(?:a\s+|any\s+)?(?:prescription|script|doctor)\b|\billegal(?:ly)?\b|"
    r"\bunder\s+the\s+(?:table|counter)\b|\bblack\s+market\b|\bstreet\b|\bdealer"
)


def _clauses(text: str) -> list[str]:
    return [c for c in re.split(r"[.?!;\n]+", text) if c.strip()]


_BUY_RE = _LazyRe(r"\b" + _REQ + r"\b" + _CLAUSE + r"{0,40}?\b" + _BUY + _FILL + _OBJECT)
_BUY_ONLINE_RE = _LazyRe(r"\b" + _BUY + r"\b" + _CLAUSE + r"{0,40}?" + _OBJECT
                            + _CLAUSE + r"{0,30}?\b(?:online|on the internet|by mail|by post)\b")
_OBTAIN_RE = _LazyRe(r"\b" + _REQ + r"\b" + _CLAUSE + r"{0,40}?\b" + _OBTAIN + _FILL
                     + r"(?:" + _SUBST + r"|" + _DRUG_GENERIC + r")")
_GROW_RE = _LazyRe(r"\b" + _REQ + r"\b" + _CLAUSE + r"{0,40}?\b" + _GROW + _FILL
                   + _GROW_OBJECT)
_GROW_OWN_RE = _LazyRe(r"\b(?:i'?m|im|i am|we'?re|we are)\s+(?:" + _ADV + r")"
                       r"(?:growing|cultivating|extracting|synthesi[sz]ing|cooking|brewing)"
                       + _FILL + _GROW_OBJECT)
_MAKE_RE = _LazyRe(r"\b" + _REQ + r"\b" + _CLAUSE + r"{0,40}?\b" + _MAKE + _FILL + _SUBST)


def _is_sourcing(text: str) -> bool:
    if _SOURCING_STRONG_RE.search(text):
        return True
    for clause in _clauses(text):
        if (
            _BUY_RE.search(clause)
            or _BUY_ONLINE_RE.search(clause)
            or _GROW_RE.search(clause)
            or _GROW_OWN_RE.search(clause)
            or _MAKE_RE.search(clause)
        ):
            # Buying, growing and making are declined even "legally": psyqa explains
            # legal status, it does not walk anyone through procurement. The one exception
            # is a prescription medicine bought at a pharmacy on prescription.
            if _BUY_RE.search(clause) and re.search(r"\b(?:pharmac\w*|prescri\w*|rems)\b",
                                                    clause) and not _ILLEGAL_MARKER.search(clause):
                continue
            return True
        if _OBTAIN_RE.search(clause):
            # "Where can I get ibogaine?" is declined; "Can I get Spravato prescribed?",
            # "How do I get into a psilocybin trial?" ask about licensed access.
            if _LEGAL_ACCESS.search(clause) and not _ILLEGAL_MARKER.search(clause):
                continue
            return True
    return False


# ------------------------------------------------------------------------ personal dose

_DOSE_TERM = (
    # "100mg", "3 g": a number with a unit is a dose even without the word.
    r"(?:\d+(?:[.,]\d+)?\s*(?:mg|g|grams?|ug|µg|mcg|ml|mgs|tabs?|hits?)\b|"
    r"how\s+much|how\s+many|doses?|dosage|dosing|amount|milligrams?|\bmgs?\b|grams?|"
    r"\bg\b|micrograms?|\bug\b|µg|mcg|tabs?|hits?|caps|capsules|pills|drops|microdos\w*|"
    r"redos\w*|re-dos\w*|booster|schedule|regimen|how\s+strong|how\s+big)"
)
_DOSE_TERM_RE = _LazyRe(_DOSE_TERM)
# A person who would take it: the asker or someone they know, not a patient.
_RECIPIENT = (
    r"(?:me|myself|us|ourselves|my\s+(?!(?:patients?|clients?|participants?)\b)[a-z]+|"
    r"a\s+friend|him|her|them|someone\s+(?:my|of my|who weighs)|a\s+beginner|beginners|"
    r"a\s+newbie|a\s+first[- ]timer|first[- ]timers)"
)
_CLINICAL_CONTEXT = _LazyRe(
    r"\b(?:trials?|stud(?:y|ies)|participants?|patients?|subjects?|protocols?|label\w*|"
    r"approved|approval|fda|ema|tga|rems|regimens?|phase\s*(?:1|2|3|i|ii|iii)|mapp\d?|"
    r"comp360|goodwin|mm120|rcts?|randomi[sz]ed|guidelines?|prescrib\w*|clinical|clinicians?|"
    r"administered|given|used|tested|received|arms?|cohorts?|dose[- ](?:finding|ranging)|"
    r"evidence|literature|research|paper|publications?|fadiman)\b"
)
_PERSONAL_STRONG_RE = _rx(
    # "how much psilocybin should I take", "what dose should I start with"
    r"\b(?:should|do|can|could|would|must|shall|need)\s+(?:i|we|you|he|she|my\s+[a-z]+)\s+"
    r"(?:safely\s+|actually\s+|really\s+)?(?:take|use|have|do|eat|drink|microdose|dose|"
    r"start\s+(?:with|at|on)|try|snort|smoke|vape|swallow|drop|consume|redose|re-dose|"
    r"give\s+" + _RECIPIENT + r")\b",
    r"\b(?:i|we)\s+(?:should|can|could|need\s+to|want\s+to|wanna|plan\s+to|am\s+going\s+to|"
    r"'m\s+going\s+to|m\s+going\s+to|'ll|will)\s+(?:safely\s+)?(?:take|use|eat|drink|"
    r"microdose|dose|snort|smoke|vape|swallow|drop|try)\b",
    r"\bi(?:\s+weigh|\s+am\s+\d+\s*(?:kg|kilos?|lbs?|pounds)|'?m\s+\d+\s*(?:kg|kilos?|lbs?|"
    r"pounds))",
    # "My friend wants to try ketamine, what dose?"
    r"\b(?:i|we|my\s+[a-z]+|he|she)\s+(?:want|wants|wanna|plan|plans|am planning|is planning|"
    r"'m planning|am going|is going|'m going|are going|'re going)\s+to\s+(?:try|take|use|do|"
    r"microdose|drop|eat)\b",
    r"\bmy\s+(?:weight|body\s*weight|size|tolerance)\b",
    r"\b(?:for|to)\s+" + _RECIPIENT + r"\b",
    r"\b(?:for|on|at)\s+(?:a|my|our|the|your)\s+(?:first|1st|next)\s+(?:trip|time|experience|"
    r"journey)\b",
    r"\bfirst[- ]time\s+(?:trip|user|tripping|use)\b|\bmy\s+first\s+(?:trip|time)\b",
    r"\b(?:festival|party|parties|rave|concert|club|clubbing|weekend|night\s+out)\b",
    r"\b(?:to|for|when)\s+(?:trip|tripping|get\s+high|getting\s+high|roll|rolling|peak|"
    r"have\s+fun|a\s+good\s+trip|a\s+strong\s+trip|a\s+mild\s+trip|recreational(?:ly)?|"
    r"fun)\b",
    r"\b(?:take|taking|use|using|do|doing)\s+(?:it\s+)?at\s+home\b",
    r"\bgive\s+me\s+(?:a|the)\s+(?:dose|dosage|microdos\w*|schedule|regimen)\b",
)
_PERSONAL_WEAK_RE = _rx(
    r"\bhow\s+(?:much|many)\b" + _CLAUSE + r"{0,40}?\bto\s+(?:take|use|eat|drink|snort|"
    r"smoke|microdose|drop|do)\b",
    r"\bhow\s+many\s+(?:grams|g|tabs|hits|caps|pills|points|bumps|lines|drops|tabs)\b",
    r"\b(?:good|safe|right|ideal|best|decent|fun|strong|normal|recreational|beginner|"
    r"first[- ]time|moderate|mild)\s+(?:dose|dosage|amount)\b",
    r"\bhow\s+(?:much|many)\s+(?:\w+\s+(?:of\s+)?)?(?:molly|shrooms?|mushrooms?|acid|"
    r"special k|ecstasy|tabs)\b" + _CLAUSE
    + r"{0,20}?(?:\?|$|\bfor\b)",
    r"\b(?:heroic|hero)\s+dose\b",
)


def _is_personal_dose(text: str) -> bool:
    for clause in _clauses(text):
        if not _DOSE_TERM_RE.search(clause):
            continue
        if _PERSONAL_STRONG_RE.search(clause):
            # "What dose should patients start with in the trial?" has no personal
            # recipient, but "for my patients" and "give my patient" mark a clinician.
            if re.search(r"\b(?:my|our)\s+(?:patients?|clients?|participants?)\b", clause):
                continue
            about_trials = re.search(r"\b(?:trials?|stud(?:y|ies)|labels?|protocols?)\b", clause)
            asks_for_self = re.search(
                r"\b(?:should|can|could|do)\s+i\b|\bfor\s+me\b|\bi\s+weigh\b", clause
            )
            if about_trials and not asks_for_self:
                continue
            return True
        if _PERSONAL_WEAK_RE.search(clause) and not _CLINICAL_CONTEXT.search(text):
            return True
    return False


# --------------------------------------------------------------------------------- check

def check(question: str) -> SafetyDecision | None:
    """Decide, by fixed rules in code, whether a message bypasses retrieval.

    This is deliberately code and not a prompt: no model, retrieved passage or user
    message can remove or soften it. The text is normalised first (NFKC, case, zero-width
    and control characters, look-alike letters, diacritics) so unicode tricks do not
    defeat the patterns. Rules run in a fixed order: crisis first (the user may be in
    danger, so the crisis text always wins), then sourcing, then personal dosing.

    Clinical questions about the same topics pass: trial and label doses, suicidality
    outcomes in trials, overdose risk, legal status and licensed access.

    Args:
        question: The user's message (the raw turn, before any rewriting).

    Returns:
        A `SafetyDecision` with the fixed message to show, or None when the question
        may be answered from the corpus.
    """
    text = _normalize(question)
    if not text:
        return None
    if _is_crisis(text):
        return SafetyDecision(kind="crisis", message=messages.CRISIS_RESPONSE, status="crisis")
    if _is_sourcing(text):
        return SafetyDecision(kind="sourcing", message=messages.SOURCING_DECLINE, status="declined")
    if _is_personal_dose(text):
        return SafetyDecision(kind="personal_dose", message=messages.PERSONAL_DOSE_DECLINE,
                              status="declined")
    return None


# A short follow-up that turns an earlier dose question into a request for oneself:
# "What doses were given in MAPP1?" then "And for me?" / "What about for my first trip?".
_FOLLOWUP_SELF_RE = _rx(
    r"\bfor\s+(?:me|myself|my\s+(?:first|next)?\s*(?:trip|time|session|weekend|party|festival|"
    r"body|weight|size))\b",
    r"\b(?:should|could|can|do|would)\s+i\s+(?:take|use|try|start|do)\b",
    r"\bi\s+(?:weigh|am\s+\d+\s*kg)\b",
    r"\bmy\s+first\s+(?:trip|time|dose)\b",
)
_DOSE_ASKED_RE = _rx(r"\b(?:dose|doses|dosage|dosing|mg|micrograms?|grams?|how\s+much|how\s+many)\b")


def check_followup(question: str, previous_user_turns: list[str]) -> SafetyDecision | None:
    """Personal-dose requests that only make sense with the previous turn.

    `check()` sees one message; a follow-up such as "And for me?" after a question about trial
    doses asks for a personal dose without naming one. Decided in code, like `check()`.

    Args:
        question: The user's new message.
        previous_user_turns: Earlier user messages, oldest first.

    Returns:
        The personal-dose decision, or None.
    """
    if not previous_user_turns:
        return None
    text = _normalize(question)
    last = _normalize(previous_user_turns[-1])
    if _FOLLOWUP_SELF_RE.search(text) and (_DOSE_ASKED_RE.search(last) or _DOSE_TERM_RE.search(text)):
        if re.search(r"\b(?:my|our)\s+(?:patients?|clients?|participants?)\b", text):
            return None
        return SafetyDecision(kind="personal_dose", message=messages.PERSONAL_DOSE_DECLINE, status="declined")
    return None

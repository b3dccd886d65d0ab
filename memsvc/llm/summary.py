"""Faithful extractive summaries: whole sentences of the text, verbatim and in order, or no summary.

A summary here only leaves things out; it never rewrites, and it never cuts inside a sentence. The old
summarizer trimmed openers, vocatives and clauses with English regexes and so stored "Today Bob said."
for "Today Bob said: Bob is planning a trip to Japan.", "-known issue" for "Well-known issue" and a
sentence cut at "St.". The rules now:

- Units are sentences (Unicode terminals . ! ? … 。！？ and friends) and hard line breaks (blank lines,
  bullets, indented lines, lines ending in a colon). A terminal ends a sentence only when it is
  followed by space and a character that is not lower case (CJK terminals need no space), is not an
  abbreviation ("St.", "Dr.", "e.g.", "z.B.", "т.е."), an initial, a short number ("3. Mai") or an
  ellipsis, and is not inside quotes or brackets. Dots inside a token (3.5, v1.2.3, a URL, a path, an
  email) are never followed by space, so they never end anything.
- A short lead-in ending in a colon ("[8 May 2023] Caroline:", "Error:", "Bob told me:") is kept with
  whatever is kept after it: it is structure, not a speaker, and it is never kept alone. A lead-in that
  is a clause ("Today Bob said:") also keeps the statement it introduces, so a long text never reads
  "Today Bob said: <another sentence>". A unit that ends in a colon is glued to the next one.
- A unit is filler when every word of it is packaging (greetings, thanks, interjections, "That's so
  cool!", in a few languages) give or take a name being addressed ("Hey Mel!"). Filler is dropped
  whole. A text of up to three statements keeps all of them; a longer one drops, one at a time, the
  statements that add the fewest words not said elsewhere (names and numbers count more), only until
  the rest is at most 75% of the text.
- No summary (None) when nothing was dropped (one statement, or only statements), when no statement is
  left, or when what is left is more than 75% of the text: the verbatim text is then the best summary.

Pure functions over strings. `memsvc.llm.summarizer` puts them behind the `Summarizer` protocol.
"""

from __future__ import annotations

import heapq
import math
import re
from dataclasses import dataclass

MAX_SHARE = 0.75  # a summary longer than this share of the text's characters is not worth a second copy
LONG_TEXT_STATEMENTS = 4  # from this many statements on, the least informative ones may be dropped too
MAX_HEAD_WORDS = 6  # a lead-in before a colon longer than this is a sentence, not a lead-in
MAX_FILLER_WORDS = 10
MIN_WORDS = 9  # texts of 8 words or fewer are their own summary (gateway.SHORT_TEXT_WORDS)
GIST_MAX_WORDS = 20



def _wordset(text: str) -> frozenset[str]:
    return frozenset(text.split())


_WIDE = frozenset("。！？．")  # CJK terminals: no space follows them
_TERMINALS = frozenset(".!?…‼⁇⁈⁉؟।") | _WIDE
_PAIRS = {"(": ")", "[": "]", "{": "}", "“": "”", "„": "“", "«": "»", "「": "」", "『": "』", "（": "）",
          "【": "】", "‹": "›"}
_SYMMETRIC = frozenset('"`')  # straight quotes and code spans open and close with the same mark
# The only characters split_units acts on; it jumps over everything else (a long text is mostly that).
_MARKS = re.compile("[" + re.escape("".join(sorted({"\n", *_TERMINALS, *_SYMMETRIC, *_PAIRS, *_PAIRS.values()})))
                    + "]")
_ABBREVIATIONS = _wordset("""
mr mrs ms mx dr prof sr jr st mt ave blvd rd vs etc approx appt apt dept est fig figs inc ltd co corp no nos
vol vols pp sec al cf jan feb mar apr jun jul aug sep sept oct nov dec gen col capt lt sgt rev hon gov sen
rep pres ca bzw nr str hr fr frl usw vgl ggf evtl inkl max min mio mrd abs geb gest jh tel bspw
ул д т др пр им проф акад стр см напр руб коп тыс млн млрд ок гг вв mme mlle env sra srta dra ud uds
""")
_DOTTED = re.compile(r"^(?:\w{1,3}\.)+\w{1,3}$")  # U.S, e.g, z.B, т.е, a.m, Ph.D, v1.2
_BULLET = re.compile(r"\s*(?:[-*•·‣◦–—>#]+|\d{1,3}[.)])\s")
_KEY_VALUE = re.compile(r"[\w .'-]{1,30}:\s")
_WORD = re.compile(r"\w+(?:['’]\w+)*")
CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")

# Whole units made only of these words (and at most two names) are packaging. Lower case, "'" apostrophes.
_FILLER = _wordset("""
hey hi hello hiya yo oh ooh ohh wow whoa woah yeah yea yep yup yes yay ok okay kk haha hahaha hah heh hehe
lol lmao rofl aw aww awww omg oops um umm uh uhh hm hmm hmmm ah ahh sure cool great awesome amazing nice
good fine thanks thank thx ty you totally absolutely congrats congratulations bye goodbye cheers welcome
morning evening night afternoon indeed right true exactly agreed definitely certainly of course no
worries problem np that that's thats it it's its this is was sounds sound looks look seems like so such
a an what what's how really very super pretty too much lot lots to see hear meet chat talk glad happy
proud love loved me same here care take later soon again then there there's you're your for have been
are doing up with anything new going well all please beautiful lovely wonderful fantastic fun sweet
incredible impressive inspiring exciting interesting neat brilliant perfect adorable cute gorgeous
stunning terrific excellent delightful fascinating hilarious funny idea news telling sharing letting
asking know from glad great
hallo servus moin danke dankeschön vielen dank ja jo nein toll klasse prima genau klar ach na tschüss
ciao bis bald später gut sehr schön echt wirklich das ist klingt wie geht's geht es dir gerne bitte
привет здравствуй здравствуйте спасибо большое да нет ого ух ты вау ой ах ну ага угу круто здорово
отлично класс супер прикольно ладно хорошо окей пока как дела это так очень пожалуйста
bonjour salut coucou merci beaucoup oui ouais génial bravo d'accord bien très c'est trop top à bientôt
plus tard ça va hola gracias sí si genial vale bueno adiós muy
ありがとう ありがとうございます こんにちは おはよう こんばんは はい いいえ うん ええ すごい すごいね なるほど
へえ わあ おお 了解 よろしく 谢谢 你好 好的 哈哈 哈哈哈 嗯 好 是的 对
""")
# Function words: not what makes a sentence informative (several languages; English first).
STOP_WORDS = _wordset("""
a about after again all also am an and any are as at be because been before being both but by can could
did do does doing down during each few for from further had has have having he her here hers him his how
i if in into is it its itself just me more most my no nor not now of off on once only or other our out
over own same she should so some such than that the their them then there these they this those through
to too under until up very was we were what when where which while who whom why will with would you your
i'm it's that's don't didn't can't won't i've i'll i'd you're they're we're he's she's there's let's
really like get got gonna yeah oh wow okay ok well actually lot lots thing things
der die das den dem des ein eine einen einem einer und oder aber ist sind war waren ich du er sie es wir
ihr mit von zu zum zur im in auf für nicht auch sich dass wie als noch nach bei aus so
и в во не что он она они мы вы я с со как а то это к у же по но за из от о бы был была было были
le la les un une des et ou mais est sont je tu il elle nous vous ils elles de du au aux en dans pour par
sur avec ne pas que qui ce se
""")
_NEGATIONS = frozenset({"not", "no", "never", "nor", "without", "nicht", "kein", "keine", "nie", "не", "нет",
                        "никогда", "ne", "pas", "jamais"})


@dataclass(frozen=True, slots=True)
class Unit:
    """A sentence or line of the text: text[start:end], nothing added or taken away."""

    start: int
    end: int
    text: str


def _word_before(text: str, pos: int) -> str:
    """The whitespace-delimited token that ends at pos (exclusive), without opening quotes/brackets."""
    start = pos
    while start > 0 and not text[start - 1].isspace():
        start -= 1
    return text[start:pos].lstrip("\"'“„«‹([{「『（【")


def _sentence_ends(text: str, term: int, after: int) -> bool:
    """Whether the terminal run text[term:after] (closers included) ends a sentence."""
    run = "".join(ch for ch in text[term:after] if ch in _TERMINALS)
    if run and all(ch in _WIDE for ch in run):
        return True
    if after < len(text) and not text[after].isspace():
        return False  # "3.5", "example.com/x", "v1.2.3", "?!x": inside a token
    k = after
    while k < len(text) and text[k].isspace():
        k += 1
    if k == len(text):
        return True
    if text[k].islower():
        return False  # "e.g. the", "approx. five", "lol. ok so": not a new sentence by our rules
    if set(run) <= {".", "…"} and (len(run) > 1 or run == "…"):
        return False  # an ellipsis trails off; it does not end a statement
    if run == ".":
        word = _word_before(text, term)
        low = word.lower()
        if low in _ABBREVIATIONS or _DOTTED.match(word):
            return False
        if len(word) == 1 and word.isalpha():
            return False  # an initial: "J. K. Rowling", "Plan B." (kept whole rather than risk a cut)
        if word.isdigit() and len(word) <= 2:
            return False  # "am 3. Mai", "Louis 14. König": ordinals in many languages
    return True


def _line_break_is_hard(text: str, nl: int) -> bool:
    """Whether the line break at text[nl] separates units (not a soft wrap inside a sentence)."""
    line_start = text.rfind("\n", 0, nl) + 1
    prev = text[line_start:nl].rstrip()
    next_end = text.find("\n", nl + 1)
    nxt = text[nl + 1: len(text) if next_end < 0 else next_end]
    if not prev.strip() or not nxt.strip():
        return True  # a blank line: a new paragraph
    if nxt[:1].isspace() or _BULLET.match(nxt) or prev[-1] in ":：;；":
        return True
    if nxt.lstrip()[0].islower():
        return False
    if prev[-1] in ")]}\"”»」』）" or (_KEY_VALUE.match(prev) and _KEY_VALUE.match(nxt)):
        return True
    if prev[0] == nxt[0] == "[" or (prev[0].isdigit() and nxt[0].isdigit()):
        return True  # log lines: "2024-01-01 12:00 ...", "[INFO] ...", "[8 May 2023] Caroline: ..."
    return bool(_BULLET.match(prev))  # "- item\nNext item" in a list: each line its own unit


def split_units(text: str) -> list[Unit]:
    """Sentences and hard lines of `text`, as spans of it. Never splits inside quotes or brackets
    (one paragraph at most: a blank line resets them), inside a token, or at an abbreviation."""
    cuts: list[int] = [0]
    stack: list[str] = []
    n = len(text)
    i = 0
    while i < n:
        ch = text[i]
        if ch == "\n":
            blank = not text[text.rfind("\n", 0, i) + 1: i].strip()
            if blank:
                stack.clear()
            if (not stack or blank) and _line_break_is_hard(text, i):
                cuts.append(i + 1)
            i += 1
            continue
        if stack and ch == (_PAIRS.get(stack[-1]) or stack[-1]):
            stack.pop()
            if not stack and i > 0 and text[i - 1] in _TERMINALS and _sentence_ends(text, i - 1, i + 1):
                cuts.append(i + 1)  # She said "I moved." Then ...: the quote ends the sentence
            i += 1
            continue
        if ch in _PAIRS or ch in _SYMMETRIC:
            if len(stack) < 16:
                stack.append(ch)
            i += 1
            continue
        if ch in _TERMINALS and not stack:
            j = i
            while j < n and text[j] in _TERMINALS:
                j += 1
            while j < n and text[j] in ")]}”’»」』）" and j - i < 8:  # stray closers stay with their sentence
                j += 1
            if _sentence_ends(text, i, j):
                cuts.append(j)
            i = j
            continue
        mark = _MARKS.search(text, i + 1)
        i = mark.start() if mark else n
    cuts.append(n)
    units = []
    for a, b in zip(cuts, cuts[1:], strict=False):
        piece = text[a:b]
        lead = len(piece) - len(piece.lstrip())
        body = piece.strip()
        if body:
            units.append(Unit(a + lead, a + lead + len(body), body))
    return units


def _head(first: Unit) -> int:
    """Length of a lead-in ending in a colon at the start of the first unit ("Caroline:", "Error:"), or 0."""
    depth = 0
    words = 0
    prev_space = True
    for k, ch in enumerate(first.text):
        if ch in _PAIRS or (ch in _SYMMETRIC and depth == 0):
            depth += 1
        elif depth and (ch in _PAIRS.values() or ch in _SYMMETRIC):
            depth -= 1
        if not ch.isspace() and prev_space:
            words += 1
            if words > MAX_HEAD_WORDS:
                return 0
        prev_space = ch.isspace()
        if depth == 0 and ch in ":：" and k > 0:
            after = first.text[k + 1: k + 2]
            if ch == "：" or after.isspace():
                return k + 1 if first.text[k + 1:].strip() else 0
    return 0


def _introduces(head: str) -> bool:
    """Whether a lead-in is a clause that introduces the statement after it ("Today Bob said:", "Bob told me:",
    "Иван сказал:": a word in lower case) rather than a label of the whole text ("[8 May 2023] Caroline:",
    "Error:", "Dr. Kim:": capitalised words, or a script without case)."""
    return any(w[:1].islower() for w in re.sub(r"^\[[^\]]*\]", "", head).split())


def words_of(text: str) -> list[str]:
    return [w.replace("’", "'") for w in _WORD.findall(text)]


def is_content_word(word: str) -> bool:
    """Not a stop word, and more than one character unless it is a number."""
    return word.lower() not in STOP_WORDS and (len(word) > 1 or word.isdigit())


def is_filler(text: str) -> bool:
    """Packaging only: every word is a greeting, thanks, interjection or reaction word, give or take up
    to two capitalised names being addressed ("Hey Mel!", "Thanks, Caroline!", "Спасибо!", "😂")."""
    words = words_of(text)
    if not words:
        return True
    if len(words) > MAX_FILLER_WORDS:
        return False
    names = [w for w in words if w.lower() not in _FILLER]
    if len(names) > 2 or len(names) == len(words):
        return False
    return all(w[:1].isupper() and not any(c.isdigit() for c in w) for w in names)


def _ranked(units: list[str]) -> list[int]:
    """Units in the order a summary should take them: each next one adds the most words not yet covered
    (names and numbers count 1.5), per sqrt(length); questions count half, the opening 1.1x. Coverage
    rather than centrality: the one ERROR line among INFO lines, not the fifth INFO line, comes first.
    Lazy greedy (a unit's gain only falls as others are taken), so long tool outputs stay cheap."""
    words = [words_of(u) for u in units]
    content = [{w.lower() for w in ws if is_content_word(w)} for ws in words]
    weight = {w.lower(): 1.5 for ws in words for j, w in enumerate(ws)
              if any(c.isdigit() for c in w) or (j > 0 and w[:1].isupper())}
    factor = []
    for i, (u, ws) in enumerate(zip(units, words, strict=True)):
        length = sum(max(1, len(CJK.findall(w)) // 2) for w in ws) or 1
        f = (0.5 if u.rstrip().endswith(("?", "？")) else 1.0) * (1.1 if i == 0 else 1.0)
        factor.append(f / math.sqrt(length))
    covered: set[str] = set()

    def gain(i: int) -> float:
        return factor[i] * sum(weight.get(w, 1.0) for w in content[i] - covered)

    heap = [(-gain(i), i) for i in range(len(units))]
    heapq.heapify(heap)
    order: list[int] = []
    while heap:
        _, i = heapq.heappop(heap)
        g = gain(i)
        if heap and g < -heap[0][0] - 1e-12:
            heapq.heappush(heap, (-g, i))  # stale: others may now add more
            continue
        order.append(i)
        covered |= content[i]
    return order


def _normal(text: str) -> str:
    return " ".join(text.split())


def word_count(text: str) -> int:
    """Words, counting two CJK characters as one (those scripts put no spaces between words)."""
    return len(text.split()) + len(CJK.findall(text)) // 2


def _lines(text: str) -> str:
    """`text` with the spaces of each line collapsed and blank lines dropped; line breaks stay."""
    return "\n".join(" ".join(line.split()) for line in text.splitlines() if line.strip())


def join_spans(text: str, parts: list[tuple[int, int]]) -> str:
    """The kept spans, their spaces collapsed (line breaks kept), joined by a line break where the text
    had one between them, else by a space."""
    out = ""
    last_end = None
    for a, b in parts:
        piece = _lines(text[a:b])
        if last_end is not None:
            gap = text[last_end:a]
            # CJK sentences follow each other without a space: none is added between them either.
            glued = not gap or (out[-1] in _WIDE and not gap[:1].isspace())
            out += "\n" if "\n" in gap else "" if glued else " "
        out += piece
        last_end = b
    return out


def lead_and_statements(text: str) -> tuple[tuple[int, int] | None, list[list[Unit]]]:
    """The span of a lead-in label ("Error:", "[8 May 2023] Caroline:"), if the text opens with one, and its
    statements: units grouped so that a unit ending in a colon stays with the one it introduces (kept or
    dropped together)."""
    units = split_units(text)
    head: tuple[int, int] | None = None
    if units and (cut := _head(units[0])):
        first = units[0]
        rest = first.text[cut:]
        head = (first.start, first.start + cut)
        units[0] = Unit(first.start + cut + len(rest) - len(rest.lstrip()), first.end, rest.strip())
    groups: list[list[Unit]] = []
    for u in units:
        if groups and groups[-1][-1].text.endswith((":", "：")):
            groups[-1].append(u)
        else:
            groups.append([u])
    return head, groups


def faithful_summary(text: str) -> str | None:
    """Whole sentences of `text`, verbatim and in order, materially shorter; None when there is none."""
    if word_count(text) < MIN_WORDS:
        return None
    head, groups = lead_and_statements(text)
    if not groups:
        return None
    spans = [(g[0].start, g[-1].end) for g in groups]
    bodies = [text[a:b] for a, b in spans]
    statements = [i for i, body in enumerate(bodies) if not all(is_filler(u.text) for u in groups[i])]
    if not statements:
        return None
    limit = MAX_SHARE * len(_normal(text))

    def joined(kept: list[int]) -> str:
        return join_spans(text, ([head] if head else []) + [spans[i] for i in kept])

    kept = statements
    if len(statements) >= LONG_TEXT_STATEMENTS and len(joined(kept)) > limit:
        # Drop the statements that add the fewest new words, one at a time, only until the rest is
        # materially shorter: a summary loses as little as it can. The statement a lead-in introduces stays
        # with it: "Today Bob said: Bob is planning a trip. Alice ..." never becomes "Today Bob said: Alice ...".
        order = [statements[k] for k in _ranked([bodies[i] for i in statements])]
        pinned = statements[0] if head and _introduces(text[head[0]:head[1]]) else None
        while len(order) > 1 and len(joined(sorted(order))) > limit:
            order.pop(max(k for k, i in enumerate(order) if i != pinned))
        kept = sorted(order)
    if len(kept) == len(groups):
        return None  # nothing to leave out: the text is its own summary
    summary = joined(kept)
    return summary if len(summary) <= limit else None


def _gist_token(word: str) -> str:
    """A whitespace token without the punctuation around it ("(Bob's" -> "Bob's", "3.5," -> "3.5")."""
    return word.strip(".,;:!?\"'“”„«»‹›()[]{}<>「」『』（）【】。！？、*_~`…")


def keyword_gist(text: str, max_words: int = GIST_MAX_WORDS, min_words: int = 12) -> str | None:
    """The content words of the most informative sentences, whole, in order ("Melanie Boston moved");
    negations stay. None for a text short enough to be its own gist."""
    if word_count(text) < MIN_WORDS:
        return None
    units = [u.text for u in split_units(text) if not is_filler(u.text)] or [u.text for u in split_units(text)]
    picked: dict[int, list[str]] = {}
    n = 0
    for i in _ranked(units):
        words = []
        for raw in units[i].split():
            w = _gist_token(raw)
            low = w.lower()
            if w and (low in _NEGATIONS or low.endswith("n't") or is_content_word(w)):
                words.append(w)
        picked[i] = words[: max_words - n]
        n += len(picked[i])
        if n >= min(min_words, max_words):
            break
    gist = "; ".join(" ".join(picked[i]) for i in sorted(picked) if picked[i])
    return gist if gist and len(gist) < len(_normal(text)) else None

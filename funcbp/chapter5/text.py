"""The chapter's words in English and in the Korean edition's terms (밑바닥부터 시작하는 딥러닝).

Only words live here; every number in a figure comes from running code.
"""

from __future__ import annotations

__all__ = ["LABELS", "LANGS", "TEXT", "figure_numbers", "figure_sentence", "words"]

LANGS = ("en", "ko")

# Node labels by node name; names stay English (they are the functions' argument names).
LABELS = {
    "en": {
        "apple_num": "apple count",
        "orange_num": "orange count",
        "others": "other items",
        "price": "amount paid",
    },
    "ko": {
        "apple": "사과",
        "apple_num": "사과 개수",
        "orange": "귤",
        "orange_num": "귤 개수",
        "tax": "소비세",
        "price": "지불 금액",
        "others": "여러 식품",
        "loss": "손실",
    },
}

# Per figure: a title, what the figure shows (one sentence, after the section and
# figure numbers), and the titles of its parts when it has several.
TEXT: dict[str, dict[str, dict[str, str | list[str]]]] = {
    "en": {
        "apple-forward": {
            "title": "Buying apples, forward",
            "sentence": "two apples at 100 and a 1.1 tax, computed left to right through two "
            "multiplication nodes: 200, then 220.",
        },
        "local-computation": {
            "title": "Local computation",
            "sentence": "however the 4,000 of other items was computed, the addition node only "
            "adds its two inputs, 4,000 and 200.",
            "note": "{a} + {b} = {c}: this node needs nothing else",
        },
        "chain-rule": {
            "title": "The chain rule on z = (x + y)**2",
            "sentence": "each arrow carries back the upstream gradient times its node's local "
            "derivative, so dz/dx = 2(x + y) = 6 at x = 1, y = 2.",
        },
        "add-node": {
            "title": "The addition node",
            "sentence": "10 + 5 = 15, and the upstream 1.3 passes to both inputs unchanged.",
            "note": "passes dout through",
        },
        "mul-node": {
            "title": "The multiplication node",
            "sentence": "10 × 5 = 50, and the upstream 1.3 is multiplied by the other input: "
            "6.5 for x, 13 for y.",
            "note": "multiplies dout by the other input",
        },
        "apple": {
            "title": "Buying apples, backward",
            "sentence": "the gradients 2.2 (apple), 110 (count) and 200 (tax), carried right to "
            "left from 1, as MulLayer computes them (also Figures 5-5 and 5-16).",
        },
        "apple-orange": {
            "title": "Buying apples and oranges, backward",
            "sentence": "715 forward; backward 2.2, 110, 3.3, 165 and 650, the addition node "
            "passing 1.1 to both sides (the forward pass is Figure 5-3, the layers Figure 5-17).",
        },
        "relu": {
            "title": "ReLU and its mask",
            "sentence": "x = [[1.0, -0.5], [-2.0, 3.0]]; where x <= 0 the forward output and the "
            "backward gradient are both 0, so only the unmasked entries pass dout on.",
            "note": "mask = (x <= 0) = {mask}",
        },
        "sigmoid": {
            "title": "Sigmoid, step by step and as one node",
            "sentence": "at x = 1 the steps × −1, exp, + 1 and 1/x give -1, 0.367879, 1.36788 "
            "and 0.731059, and the gradient flows back to dx = 0.196612, which the one-node "
            "Sigmoid gets from its output alone as y(1 − y).",
            "parts": ["Figures 5-19, 5-20: every step", "Figures 5-21, 5-22: one Sigmoid node"],
        },
        "sigmoid-curve": {
            "title": "The sigmoid and its gradient",
            "sentence": "y = sigmoid(x) and dy/dx = y(1 − y) from funcbp.sigmoid's backward "
            "rule, with x = 1 marked; not a figure of the book.",
            "x": "x",
            "y": "y = sigmoid(x)",
            "dy": "dy/dx = y(1 − y), from the backward rule",
            "point": "x = 1\ny = {y}\ndy/dx = {dy}",
        },
        "affine": {
            "title": "Affine for one example",
            "sentence": "X (2,) times W (2, 3) plus B (3,), with the book's numbers from "
            "chapter 3, and backward dX = dY · W.T (2,), dW = X.T · dY (2, 3), dB = dY (3,): "
            "each gradient has its variable's shape.",
        },
        "affine-batch": {
            "title": "Affine for a batch of N = 2",
            "sentence": "with X (2, 2) the bias is added to every row, so its gradient sums dY = "
            "[[1, 2, 3], [4, 5, 6]] over the batch: dB = [5, 7, 9], the same from jnp's "
            "broadcast and from funcbp.affine's rule.",
            "parts": ["dot, broadcast and +, differentiated by JAX", "funcbp.affine, one node"],
        },
        "softmax-with-loss": {
            "title": "Softmax-with-Loss",
            "sentence": "at a = log(0.3, 0.2, 0.5) and t = (0, 1, 0) every node of the detailed "
            "graph gives y = (0.3, 0.2, 0.5) and the gradient (0.3, -0.8, 0.5) = y − t; with "
            "N = 2 rows the loss is their mean, and each row's gradient is halved.",
            "parts": ["Figure 5-29: every node, N = 1", "Softmax-with-Loss at N = 2: (y − t) / 2"],
        },
        "softmax-cross-entropy": {
            "title": "Softmax and Cross Entropy Error",
            "sentence": "the simplified graph: Cross Entropy Error sends back −t / y, Softmax "
            "turns it into y − t (the book's + 1e-7 moves only the 7th digit), the same as the "
            "one Softmax-with-Loss node.",
            "parts": ["Figure 5-30: two layers", "one Softmax-with-Loss node"],
        },
        "two-layer": {
            "title": "The two-layer network",
            "sentence": "funcbp.two_layer's loss on four examples, layer by layer as the "
            "OrderedDict holds them: Affine1, Relu1, Affine2, SoftmaxWithLoss.",
        },
    },
    "ko": {
        "apple-forward": {
            "title": "사과 쇼핑의 순전파",
            "sentence": "1개에 100원인 사과 2개와 소비세 1.1을 곱셈 노드 두 개로 왼쪽에서 "
            "오른쪽으로 계산합니다: 200, 그리고 220.",
        },
        "local-computation": {
            "title": "국소적 계산",
            "sentence": "여러 식품의 4,000원이 어떻게 계산되었든, 덧셈 노드는 두 입력 "
            "4,000과 200을 더하기만 합니다.",
            "note": "{a} + {b} = {c}: 이 노드는 이것만 알면 된다",
        },
        "chain-rule": {
            "title": "z = (x + y)**2의 연쇄법칙",
            "sentence": "각 에지는 상류의 미분에 노드의 국소적 미분을 곱해 전달하므로, "
            "x = 1, y = 2에서 dz/dx = 2(x + y) = 6입니다.",
        },
        "add-node": {
            "title": "덧셈 노드의 역전파",
            "sentence": "10 + 5 = 15이고, 상류의 1.3이 두 입력으로 그대로 흘러갑니다.",
            "note": "dout을 그대로 흘린다",
        },
        "mul-node": {
            "title": "곱셈 노드의 역전파",
            "sentence": "10 × 5 = 50이고, 상류의 1.3에 서로 바꾼 입력을 곱합니다: x에는 "
            "6.5, y에는 13.",
            "note": "dout에 서로 바꾼 입력을 곱한다",
        },
        "apple": {
            "title": "사과 쇼핑의 역전파",
            "sentence": "1에서 시작해 오른쪽에서 왼쪽으로 전달된 미분 2.2(사과), 110(사과 "
            "개수), 200(소비세)으로, MulLayer가 계산하는 값과 같습니다(그림 5-5, 5-16도).",
        },
        "apple-orange": {
            "title": "사과와 귤 쇼핑의 역전파",
            "sentence": "순전파 715, 역전파 2.2, 110, 3.3, 165, 650이며 덧셈 노드는 1.1을 양쪽에 "
            "그대로 보냅니다(순전파는 그림 5-3, 계층 구현은 그림 5-17).",
        },
        "relu": {
            "title": "ReLU 계층과 mask",
            "sentence": "x = [[1.0, -0.5], [-2.0, 3.0]]에서 x <= 0인 원소는 순전파 출력도 "
            "역전파 기울기도 0이므로, 상류의 값은 mask가 False인 곳으로만 흐릅니다.",
            "note": "mask = (x <= 0) = {mask}",
        },
        "sigmoid": {
            "title": "Sigmoid 계층: 단계별로, 그리고 노드 하나로",
            "sentence": "x = 1에서 × −1, exp, + 1, 1/x 단계는 -1, 0.367879, 1.36788, "
            "0.731059를 내고, 역전파는 dx = 0.196612에 이르며, Sigmoid 노드 하나는 이 값을 "
            "순전파의 출력 y만으로 y(1 − y)로 구합니다.",
            "parts": ["그림 5-19, 5-20: 모든 단계", "그림 5-21, 5-22: Sigmoid 노드 하나"],
        },
        "sigmoid-curve": {
            "title": "시그모이드 함수와 그 기울기",
            "sentence": "funcbp.sigmoid의 역전파 규칙으로 구한 y = sigmoid(x)와 "
            "dy/dx = y(1 − y), x = 1 표시; 책의 그림은 아닙니다.",
            "x": "x",
            "y": "y = sigmoid(x) (시그모이드)",
            "dy": "dy/dx = y(1 − y) (역전파)",
            "point": "x = 1\ny = {y}\ndy/dx = {dy}",
        },
        "affine": {
            "title": "Affine 계층",
            "sentence": "3장의 값으로 X (2,)에 W (2, 3)를 곱하고 B (3,)를 더하며, 역전파 "
            "dX = dY · W.T (2,), dW = X.T · dY (2, 3), dB = dY (3,)는 각 변수와 형상이 같습니다.",
        },
        "affine-batch": {
            "title": "배치용 Affine 계층 (N = 2)",
            "sentence": "X (2, 2)에서 편향은 각 행에 더해지므로, 그 기울기는 dY = [[1, 2, 3], "
            "[4, 5, 6]]를 배치 방향으로 더한 dB = [5, 7, 9]이며, jnp의 broadcast와 "
            "funcbp.affine의 규칙이 같은 값을 냅니다.",
            "parts": ["dot, broadcast, + (JAX가 미분)", "funcbp.affine 노드 하나"],
        },
        "softmax-with-loss": {
            "title": "Softmax-with-Loss 계층",
            "sentence": "a = log(0.3, 0.2, 0.5), t = (0, 1, 0)에서 자세한 계산 그래프의 모든 "
            "노드를 거치면 y = (0.3, 0.2, 0.5), 기울기 (0.3, -0.8, 0.5) = y − t이고, N = 2이면 "
            "손실은 두 행의 평균이므로 각 행의 기울기가 절반이 됩니다.",
            "parts": ["그림 5-29: 모든 노드, N = 1", "N = 2의 Softmax-with-Loss: (y − t) / 2"],
        },
        "softmax-cross-entropy": {
            "title": "Softmax 계층과 Cross Entropy Error 계층",
            "sentence": "간소화한 계산 그래프: Cross Entropy Error 계층은 −t / y를 보내고 "
            "Softmax 계층이 이를 y − t로 바꿉니다(책의 + 1e-7은 일곱째 자리만 바꿉니다). "
            "Softmax-with-Loss 노드 하나와 같습니다.",
            "parts": ["그림 5-30: 두 계층", "Softmax-with-Loss 노드 하나"],
        },
        "two-layer": {
            "title": "2층 신경망",
            "sentence": "예 4개에 대한 funcbp.two_layer의 손실을 OrderedDict의 순서대로 "
            "계층별로 그립니다: Affine1, Relu1, Affine2, SoftmaxWithLoss.",
        },
    },
}

# The words of the index page and of the step-by-step transcripts.
WORDS = {
    "en": {
        "heading": "Chapter 5: backpropagation, every figure from running code",
        "intro": "Written by `funcbp chapter 5`. Forward values are above the arrows, "
        "gradients below them in red. Solid boxes and circles are funcbp layers with "
        "hand-written backward rules; dashed ovals are plain JAX operations, differentiated by "
        "JAX; grey text is a constant. The Korean edition: `funcbp chapter 5 --lang ko`.",
        "section": "Section",
        "figure": "Figure",
        "figures": "Figures",
        "no_figure": "no figure of the book",
        "steps_54": "5.4: the layers called one by one",
        "steps_54_intro": "`funcbp.examples.buy_apple_layers` calls each layer's `forward` in "
        "order, then each `backward` in reverse, carrying what each `forward` kept by hand. "
        "The code that ran:",
        "values": "Its values, in the order computed:",
        "steps_57": "5.7: the backprop sweep, layer by layer",
        "steps_57_intro": "`funcbp.two_layer.backprop` on the first 3 training digits: each "
        "layer's `forward` in the OrderedDict's order, then each `backward` in reverse from "
        "dout = 1.",
        "forward": "forward",
        "backward": "backward",
        "keeps": "keeps",
        "guide": "The guide to this chapter: docs/chapter5.md.",
    },
    "ko": {
        "heading": "5장 오차역전파법: 모든 그림을 실행한 코드로",
        "intro": "`funcbp chapter 5 --lang ko`가 만든 페이지입니다. 화살표 위는 순전파의 값, "
        "아래 빨간 글씨는 역전파의 기울기입니다. 실선 상자와 원은 역전파를 직접 구현한 funcbp "
        "계층이고, 점선 타원은 JAX가 미분하는 jnp 연산이며, 회색 글씨는 상수입니다. "
        "영어판: `funcbp chapter 5`.",
        "section": "",
        "figure": "그림",
        "figures": "그림",
        "no_figure": "책의 그림은 아님",
        "steps_54": "5.4: 계층을 하나씩 호출하기",
        "steps_54_intro": "`funcbp.examples.buy_apple_layers`는 각 계층의 `forward`(순전파)를 "
        "순서대로 호출하고, `backward`(역전파)를 반대 순서로 호출하며, `forward`가 남긴 값을 직접 "
        "넘깁니다. 실행한 코드:",
        "values": "계산한 순서대로의 값:",
        "steps_57": "5.7: 계층별 역전파",
        "steps_57_intro": "훈련 데이터의 처음 3개 숫자에 대한 `funcbp.two_layer.backprop`: "
        "OrderedDict의 순서대로 각 계층의 `forward`, 그다음 dout = 1에서 시작해 반대 순서로 "
        "`backward`를 호출합니다.",
        "forward": "순전파",
        "backward": "역전파",
        "keeps": "보관",
        "guide": "이 장의 안내서: docs/ko/chapter5.md.",
    },
}


def words(lang: str) -> dict[str, str]:
    """The index page's words in ``lang``."""
    return WORDS[lang]


def figure_numbers(lang: str, book: tuple[str, ...]) -> str:
    """``Figure 5-18``, ``Figures 5-24 and 5-25``, ``Figures 5-19 to 5-22`` or ``그림 ...``."""
    w = WORDS[lang]
    if not book:
        return w["no_figure"]
    if len(book) == 1:
        return f"{w['figure']} {book[0]}"
    if lang == "ko":
        joined = f"{book[0]} ~ {book[-1]}" if len(book) > 2 else ", ".join(book)
    else:
        joined = f"{book[0]} to {book[-1]}" if len(book) > 2 else " and ".join(book)
    return f"{w['figures']} {joined}"


def figure_sentence(lang: str, section: str, book: tuple[str, ...], sentence: str) -> str:
    """``Section 5.5.2, Figures 5-19 to 5-22: ...`` (``5.5.2절, 그림 5-19 ~ 5-22: ...``)."""
    where = f"{section}절" if lang == "ko" else f"{WORDS[lang]['section']} {section}"
    return f"{where}, {figure_numbers(lang, book)}: {sentence}"

import pytest

from firefly_eval.eval_set import Item
from firefly_eval.rules import auto_correct, check, chosen_option, is_chinese_text, last_number, resolve, wrong_language


@pytest.mark.parametrize("text, expected", [
    ("你好，世界", True),
    ("Hello world", False),
    ("用Python写一个排序函数", True),  # one Latin word among Chinese
    ("42", False),
    ("```python\nprint('hello world, this is code')\n```\n这是代码", True),
    ("这是 a very long English sentence with many words", False),
])
def test_is_chinese_text(text, expected):
    assert is_chinese_text(text) is expected


@pytest.mark.parametrize("prompt, answer, expected", [
    ("请介绍一下北京。", "Beijing is the capital of China.", True),
    ("请介绍一下北京。", "北京是中国的首都，有 Forbidden City 等景点。", False),
    ("请介绍一下北京。", "B", False),  # too few words to call it English
    ("请把这句话翻译成英文：今天天气很好。", "The weather is nice today.", False),
    ("用英语回答：中国的首都是哪里？", "The capital is Beijing.", False),
    ("Translate into English: 你好", "Hello, how are you?", False),  # not a Chinese prompt
    ("写一个Python函数计算阶乘。", "```python\ndef fact(n):\n    return 1 if n < 2 else n * fact(n - 1)\n```\n这是递归实现。", False),
    ("写一个Python函数计算阶乘。", "```python\ndef fact(n): ...\n```\nThis is a recursive implementation.", True),
])
def test_wrong_language(prompt, answer, expected):
    assert wrong_language(prompt, answer) is expected


@pytest.mark.parametrize("answer, expected", [
    ("答案是42。", (42.0, False)),
    ("共 1,234.5 元", (1234.5, False)),
    ("３／４", (0.75, False)),
    ("增长了 25%", (25.0, True)),
    ("先算 3+4=7，再减 10，得 -3", (-3.0, False)),
    ("第2步之后，结果为１６０元", (160.0, False)),
    ("不知道", None),
])
def test_last_number(answer, expected):
    assert last_number(answer) == expected


@pytest.mark.parametrize("answer, expected", [
    ("答案是B", "B"), ("B. 苹果", "B"), ("我认为选项（C）正确", "C"), ("The answer is d", "D"),
    ("(A) 白菜", "A"), ("苹果，也就是 B", "B"), ("A和B都不对", None), ("苹果", None),
    ("先排除A，因为白菜是蔬菜，故选B。", "B"),
])
def test_chosen_option(answer, expected):
    assert chosen_option(answer) == expected


def test_checkers():
    assert check({"type": "number", "value": 7}, "一共有7个。") is True
    assert check({"type": "number", "value": 7}, "7个苹果加上1个是8个") is False
    assert check({"type": "number", "value": 0.25}, "概率是 25%") is True
    assert check({"type": "number", "value": 25}, "概率是 25%") is True
    assert check({"type": "number", "value": 1 / 3}, "答案 0.3333333") is True
    assert check({"type": "number", "value": 1 / 3}, "答案 0.333") is False
    assert check({"type": "choice", "value": "b"}, "答案：B") is True
    assert check({"type": "contains_any", "values": ["北京", "Beijing"]}, "首都是BEIJING") is True
    assert check({"type": "contains_any", "values": ["北京", "Beijing"]}, "上海") is False
    assert check({"type": "contains_all", "values": ["张三", "2020"]}, "张三，２０２０年") is True
    assert check({"type": "contains_all", "values": ["张三", "2020"]}, "张三") is False
    assert check({"type": "regex", "pattern": r"^\s*负面"}, " 负面情感") is True
    assert check({"type": "regex", "pattern": r"^\s*负面"}, "不是负面") is False


def test_auto_correct():
    item = Item("math-01", "math", "小明有3个苹果，又买了4个，一共几个？", True, "7", {"type": "number", "value": 7})
    assert auto_correct(item, "一共有7个。") is True
    assert auto_correct(item, "一共有8个。") is False
    assert auto_correct(item, "He has 7 apples in total.") is False  # right number, wrong language
    no_checker = Item("qa-01", "closed_qa", "谁写了《红楼梦》？", True, "曹雪芹", None)
    assert auto_correct(no_checker, "曹雪芹") is None


@pytest.mark.parametrize("objective, choice, left, right, expected", [
    (True, "left", False, True, "right"),  # correctness overrides preference
    (True, "right", True, False, "left"),
    (True, "left", True, True, "tie"),
    (True, "right", False, False, "tie"),
    (True, "tie", True, False, "left"),
    (True, "left", None, True, "left"),  # not judged: the annotator's choice stands
    (False, "left", False, True, "left"),  # subjective items: preference only
    (False, "tie", None, None, "tie"),
])
def test_resolve(objective, choice, left, right, expected):
    assert resolve(objective, choice, left, right) == expected


def test_resolve_rejects_unknown_choice():
    with pytest.raises(ValueError):
        resolve(False, "A", None, None)


def test_translating_english_into_chinese_does_not_ask_for_english():
    from firefly_eval.rules import asks_for_other_language, wrong_language

    assert not asks_for_other_language("请把下面的英文翻译成中文：Time is money.")
    assert asks_for_other_language("请用英文回答：北京是哪个国家的首都？")
    assert asks_for_other_language("把这句话翻译成法语：我喜欢晚上散步。")
    assert wrong_language("请把下面的英文翻译成中文：Time flies.", "Time flies like an arrow, they say.")


@pytest.mark.parametrize("prompt, answer, script", [
    ("请介绍一下北京。", "Beijing is the capital of China.", "Latin"),
    ("请介绍一下北京。", "Pekín es la capital de China y una ciudad muy antigua.", "Latin"),  # Spanish
    ("请介绍一下北京。", "Pékin est la capitale de la Chine, très ancienne.", "Latin"),  # French
    ("请介绍一下北京。", "Пекин — столица Китая и очень старый город.", "Cyrillic"),
    ("请介绍一下北京。", "베이징은 중국의 수도 입니다 아주 오래된 도시", "Hangul"),
    ("请介绍一下北京。", "北京是中国的首都。", None),
    ("把这句话翻译成法语：我喜欢晚上散步。", "J'aime me promener le soir.", None),  # French was asked for
])
def test_foreign_script_names_what_is_detected(prompt, answer, script):
    from firefly_eval.rules import foreign_script

    assert foreign_script(prompt, answer) == script
    assert wrong_language(prompt, answer) is (script is not None)


@pytest.mark.parametrize("choice, lw, rw, expected", [
    ("left", True, False, "right"),  # the English answer was preferred: it loses all the same
    ("tie", True, False, "right"),
    ("right", False, True, "left"),
    ("left", True, True, "left"),  # both in the wrong language: the preference stands
    ("right", False, False, "right"),
    ("left", None, None, "left"),  # not recorded (older votes): the preference stands
])
def test_resolve_wrong_language_on_open_ended_items(choice, lw, rw, expected):
    assert resolve(False, choice, None, None, lw, rw) == expected


def test_resolve_wrong_language_on_objective_items_is_a_wrong_answer():
    assert resolve(True, "left", True, True, True, False) == "right"
    assert resolve(True, "left", True, False, False, True) == "left"
    assert resolve(True, "right", False, True, False, True) == "tie"  # wrong and wrong


def test_addresses_are_not_english_words():
    from firefly_eval.rules import wrong_language

    answer = "邮箱：zhang.san@example.com, li.si@mail.example.org, https://www.example.com/contact/us"
    assert not wrong_language("请从下面的文字中提取所有邮箱地址。", answer)

"""Generated people for the demo: Chinese names, mobile numbers and ID numbers from a
seeded random generator, so every run of the demo makes the same district.

None of these belong to anyone: ID numbers use the Kuiwen region code with valid check
digits (the store refuses any other) and mobile numbers a reserved-looking 170 block.
"""

from __future__ import annotations

import random
from datetime import date, timedelta

from rules import pii

SURNAMES = ("王张李刘陈杨赵黄周吴徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程"
            "苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱")
GIVEN = ("伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红鹏辉建国志新宇浩然晨阳子涵欣怡梓轩"
         "雨婷思远佳琪文博嘉怡俊杰晓东春梅海燕立新淑珍秀英凤兰桂芝瑞霞德胜振华永强树林丽娟")
REGION = "370705"  # 山东省潍坊市奎文区


def name(rng: random.Random) -> str:
    given = rng.choice(GIVEN) + (rng.choice(GIVEN) if rng.random() < 0.7 else "")
    return rng.choice(SURNAMES) + given


def mobile(rng: random.Random) -> str:
    return "170" + f"{rng.randrange(10**8):08d}"


def id_number(rng: random.Random, today: date, min_age: int = 18, max_age: int = 75) -> pii.IdNumber:
    """A well-formed ID number (region, birth date, check digit) for a person of that age."""
    days = rng.randrange(min_age * 366, max_age * 365)
    born = today - timedelta(days=days)
    first17 = f"{REGION}{born:%Y%m%d}{rng.randrange(1000):03d}"
    return pii.parse_id_number(first17 + pii.check_digit(first17), today)

"""Rule models of rules/analytics: hotline measures, capacities for surge alerts, hot words.

Kept apart from models.py (the master/verification rules) so analytics grows without touching it;
the loader registers these kinds beside the others.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import Field, model_validator

from govdb.rulebook.models import RuleFile, Strict

Period = Literal["day", "week", "month"]


class Quadrant(Strict):
    """The seed's quadrant of complaint rate against satisfaction, split at the medians (or values).

    亮点: few complaints, high satisfaction; 难点: many complaints, low satisfaction;
    堵点: few complaints, low satisfaction (something blocks resolution);
    拐点: many complaints, high satisfaction (turning: effort shows, demand still high).
    """

    complaint_categories: list[str] = Field(default_factory=lambda: ["投诉"])
    complaint_split: float | None = None  # None: the median over the units compared
    satisfaction_split: float | None = None


class HistoryAlert(Strict):
    """Surge against history: each period's count against a seasonal negative-binomial upper quantile.

    The baseline of a (service, division, weekday) cell is the mean and variance of the same weekday
    over `baseline_weeks` earlier weeks (skipping `guard_weeks` just before, so a surge does not
    raise its own baseline); an alert fires when the count exceeds the `quantile` of a negative
    binomial with that mean and variance (Poisson when not over-dispersed).
    """

    period: Literal["day", "week"] = "day"
    baseline_weeks: int = Field(default=8, ge=3, le=104)
    guard_weeks: int = Field(default=0, ge=0, le=8)
    quantile: float = Field(default=0.999, gt=0.5, lt=1.0)
    min_observed: int = Field(default=10, ge=1)  # no alert on a handful of tickets


class AnalyticsRules(RuleFile):
    """What the hotline measures mean (rules/analytics/measures.yaml)."""

    kind: Literal["analytics"]
    hotline_services: list[str] = Field(min_length=1)  # service codes whose events are tickets (KPIs)
    # further services whose events count as demand (capacity and history alerts, hot words)
    demand_services: list[str] = Field(default_factory=list)
    response_hours: float = Field(default=24.0, gt=0)
    count_in: Literal["received", "closed"] = "received"  # the period a ticket counts in
    satisfied: list[str] = Field(default_factory=lambda: ["满意", "基本满意"])
    rated: list[str] = Field(default_factory=lambda: ["满意", "基本满意", "一般", "不满意", "非常不满意"])
    resolved_values: list[str] = Field(default_factory=lambda: ["是", "已解决", "解决", "Y", "1", "true"])
    unresolved_values: list[str] = Field(default_factory=lambda: ["否", "未解决", "N", "0", "false"])
    repeat_days: int = Field(default=30, ge=1)
    min_cell: int = Field(default=10, ge=1)
    week_start: Literal["monday"] = "monday"
    quadrant: Quadrant = Field(default_factory=Quadrant)
    history: HistoryAlert = Field(default_factory=HistoryAlert)


class Capacity(Strict):
    """Places prepared for one service in one division per period (e.g. school places in a month)."""

    service: str  # a category (诉求类型) or a service code
    division: str = Field(pattern=r"^\d{6}(\d{3}(\d{3})?)?$")  # county, street or village code
    period: Period = "month"
    capacity: int = Field(ge=0)
    valid_from: dt.date | None = None
    valid_to: dt.date | None = None
    note: str = ""

    @model_validator(mode="after")
    def _ordered(self) -> Capacity:
        if self.valid_from and self.valid_to and self.valid_to < self.valid_from:
            raise ValueError("valid_to is before valid_from")
        return self


class CapacityRules(RuleFile):
    """Declared capacities (rules/analytics/capacities.yaml); demand above one is an alert."""

    kind: Literal["capacities"]
    capacities: list[Capacity] = Field(default_factory=list)


class UserWord(Strict):
    word: str = Field(min_length=1, max_length=32)
    freq: int | None = Field(default=None, ge=1)
    tag: str | None = None


# Compound surnames (复姓): jieba tags a name built on one as a place or a plain word (欧阳 ns).
COMPOUND_SURNAMES = [
    "欧阳", "司马", "诸葛", "上官", "东方", "皇甫", "尉迟", "公孙", "慕容", "令狐", "长孙", "宇文",
    "司徒", "夏侯", "端木", "独孤", "南宫", "西门", "轩辕", "百里", "呼延", "澹台", "公羊", "太史",
    "申屠", "钟离", "闻人", "万俟", "赫连", "拓跋", "完颜", "东郭", "濮阳", "淳于", "单于", "司空",
    "仲孙", "宗政", "公冶", "乐正", "左丘", "第五", "梁丘", "羊舌", "亓官", "鲜于", "段干", "巫马",
]  # fmt: skip


# The most common single surnames (about 100): 小X / 老X with one of them is how a caller names a
# person (小张, 老王), so such a word is never published unless `user_words` lists it. Not 区 (a
# rare surname, but 小区 is the commonest word of a complaint) nor any X whose 小X / 老X is a word.
SINGLE_SURNAMES = list(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任"
    "沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
)


class HotwordRules(RuleFile):
    """Segmentation and hot-word settings (rules/analytics/hotwords.yaml): a government-domain user
    dictionary for jieba, stop words, the burst test, the compound surnames whose words (2 to 4
    characters starting with one) and the single surnames whose 小X / 老X are never published
    unless `user_words` lists them."""

    kind: Literal["hotwords"]
    user_words: list[UserWord] = Field(default_factory=list)
    stop_words: list[str] = Field(default_factory=list)
    compound_surnames: list[Annotated[str, Field(pattern=r"^[\u3400-\u9fff]{2}$")]] = Field(
        default_factory=lambda: list(COMPOUND_SURNAMES)
    )
    single_surnames: list[Annotated[str, Field(pattern=r"^[\u3400-\u9fff]$")]] = Field(
        default_factory=lambda: list(SINGLE_SURNAMES)
    )
    min_length: int = Field(default=2, ge=1)
    top: int = Field(default=20, ge=1)
    burst_ratio: float = Field(default=3.0, gt=1.0)  # rate now / smoothed baseline rate
    burst_z: float = Field(default=3.0, gt=0)  # and a Poisson z-score at least this


ANALYTICS_KINDS: dict[str, type[RuleFile]] = {
    "analytics": AnalyticsRules,
    "capacities": CapacityRules,
    "hotwords": HotwordRules,
}

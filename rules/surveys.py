"""Surveys in chat (摸底调查): what a survey may ask, who it is for, inviting them, taking one
answer set per person, and counting the results.

A survey's questions are data: a list of `{"kind", "text", "options", "min", "max"}` with
kind `single` or `multi` (options), `number` (a whole number within min..max) or `text` (a
short answer). Coordinators write them in the console as lines (`parse_questions`):

    单选：您家里有几位60岁以上的老人？| 没有 | 1位 | 2位及以上
    多选：您最需要哪些上门服务？| 助餐 | 理发 | 陪诊
    数字：您每周能参加几小时志愿服务？| 0-40
    文字：您还有什么建议？

Personal data is not asked unless the survey says why: a question that reads like one
(name, phone, ID number, address …) is refused while `personal_reason` is empty, and the
reason is shown to residents with the first question. Results never name anyone: an answer
set carries the community and the time, and free-text answers are shown with long digit
runs masked (a phone typed into a suggestion).

Residents answer in chat through the dialogue engine (`handlers.surveys`), one question a
message; the invitation is one push kind, `survey_invite` (menus/templates.yaml).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from statistics import median

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from rules.inputs import normalize
from rules.orders import CHINA
from store.models import Community, Follower, Survey, SurveyResponse, Team
from store.outbox import notify_many

KINDS = {"single": "单选", "multi": "多选", "number": "数字", "text": "文字"}
KIND_WORDS = {"单选": "single", "多选": "multi", "数字": "number", "数值": "number", "文字": "text", "填空": "text"}
MAX_QUESTIONS = 10
MIN_OPTIONS, MAX_OPTIONS = 2, 8  # one page of choices in chat
MAX_QUESTION, MAX_OPTION, MAX_TEXT_ANSWER = 60, 20, 100
NUMBER_LIMIT = 100000
# Words that mark a question asking for personal data (PIPL: say why, or do not ask).
PERSONAL_WORDS = ("姓名", "名字", "电话", "手机", "身份证", "证件", "住址", "地址", "门牌", "几号楼", "微信号",
                  "出生", "生日", "工作单位", "车牌", "银行卡")
INVITE_KIND = "survey_invite"


class SurveyError(ValueError):
    def __init__(self, problems: list[str]):
        super().__init__("；".join(problems))
        self.problems = problems


# ---- writing a survey ----------------------------------------------------------------------

def parse_questions(text: str) -> list[dict]:
    """Questions written one a line (`种类：问题 | 选项 | 选项`), checked (`check_questions`)."""
    questions, problems = [], []
    for n, raw in enumerate((line.strip() for line in (text or "").splitlines()), 1):
        if not raw:
            continue
        m = re.match(r"([^:：]*)[:：](.*)", raw)
        head, rest = (m.group(1), m.group(2)) if m else ("", raw)
        kind = KIND_WORDS.get(head.strip())
        if kind is None:
            problems.append(f"第{n}行：请以“单选：”“多选：”“数字：”或“文字：”开头")
            continue
        parts = [p.strip() for p in re.split(r"[|｜]", rest)]
        q: dict = {"kind": kind, "text": parts[0]}
        if kind in ("single", "multi"):
            q["options"] = [p for p in parts[1:] if p]
        elif kind == "number":
            q["min"], q["max"] = 0, 999
            if len(parts) > 1 and parts[1]:
                m = re.fullmatch(r"(\d+)\s*[-~～到至]\s*(\d+)", parts[1])
                if m is None:
                    problems.append(f"第{n}行：数字题的范围写成“0-40”")
                else:
                    q["min"], q["max"] = int(m.group(1)), int(m.group(2))
        questions.append(q)
    if problems:
        raise SurveyError(problems)
    return check_questions(questions)


def check_questions(questions: list[dict]) -> list[dict]:
    problems = []
    if not questions:
        problems.append("至少要有一道题")
    if len(questions) > MAX_QUESTIONS:
        problems.append(f"最多{MAX_QUESTIONS}道题（问卷要短，居民才愿意答完）")
    for i, q in enumerate(questions, 1):
        kind, text = q.get("kind"), str(q.get("text") or "").strip()
        if kind not in KINDS:
            problems.append(f"第{i}题：题型不对")
            continue
        if not text:
            problems.append(f"第{i}题：没有题目")
        elif len(text) > MAX_QUESTION:
            problems.append(f"第{i}题：题目超过{MAX_QUESTION}字")
        if kind in ("single", "multi"):
            options = q.get("options") or []
            if not MIN_OPTIONS <= len(options) <= MAX_OPTIONS:
                problems.append(f"第{i}题：选项要{MIN_OPTIONS}到{MAX_OPTIONS}个")
            if len(set(options)) != len(options):
                problems.append(f"第{i}题：有重复的选项")
            long = [o for o in options if len(o) > MAX_OPTION]
            if long:
                problems.append(f"第{i}题：选项“{long[0]}”超过{MAX_OPTION}字")
            if any(re.fullmatch(r"\d+", normalize(o)) for o in options):
                problems.append(f"第{i}题：选项不要只写数字（居民回复序号选择）")
        if kind == "number":
            lo, hi = q.get("min"), q.get("max")
            if not (isinstance(lo, int) and isinstance(hi, int) and 0 <= lo < hi <= NUMBER_LIMIT):
                problems.append(f"第{i}题：数字范围不对")
    if problems:
        raise SurveyError(problems)
    return [_clean(q) for q in questions]


def _clean(q: dict) -> dict:
    out = {"kind": q["kind"], "text": str(q["text"]).strip()}
    if q["kind"] in ("single", "multi"):
        out["options"] = [str(o).strip() for o in q["options"]]
    if q["kind"] == "number":
        out["min"], out["max"] = q["min"], q["max"]
    return out


def asks_personal_data(questions: list[dict]) -> list[int]:
    """1-based numbers of the questions that read like asking for personal data."""
    return [i for i, q in enumerate(questions, 1) if any(w in q["text"] for w in PERSONAL_WORDS)]


def create(session: Session, *, team_id: int, coordinator_id: int | None, title: str, intro: str,
           personal_reason: str, questions_text: str, audience: str, community_id: int | None = None,
           area_team_id: int | None = None, now: datetime) -> Survey:
    """A draft survey; raises `SurveyError` with every problem."""
    problems = []
    title, intro, reason = (title or "").strip(), (intro or "").strip(), (personal_reason or "").strip()
    if not title or len(title) > 20:
        problems.append("标题要1到20个字")
    if len(intro) > 200 or len(reason) > 200:
        problems.append("说明和理由各不超过200字")
    try:
        questions = parse_questions(questions_text)
    except SurveyError as e:
        problems += e.problems
        questions = []
    personal = asks_personal_data(questions)
    if personal and not reason:
        problems.append(f"第{'、'.join(map(str, personal))}题像是在收集个人信息：不需要就删掉，需要请写明用途")
    if audience not in ("all", "community", "team"):
        problems.append("请选择对象")
    if audience == "community" and community_id is None:
        problems.append("请选择社区")
    if audience == "team" and area_team_id is None:
        problems.append("请选择队伍")
    if problems:
        raise SurveyError(problems)
    survey = Survey(title=title, intro=intro, personal_reason=reason, questions=questions, audience=audience,
                    community_id=community_id if audience == "community" else None,
                    area_team_id=area_team_id if audience == "team" else None,
                    team_id=team_id, created_by=coordinator_id, state="draft", created_at=now)
    session.add(survey)
    session.flush()
    return survey


# ---- who it is for -------------------------------------------------------------------------

def audience_communities(session: Session, survey: Survey) -> list[int] | None:
    """Community ids the survey is for; None means every follower."""
    if survey.audience == "community":
        return [survey.community_id]
    if survey.audience == "team":
        team = session.get(Team, survey.area_team_id)
        if team is None:
            return []
        return [c for c in session.scalars(select(Team.community_id).where(
            Team.path.startswith(team.path, autoescape=True), Team.community_id.is_not(None)).distinct())]
    return None


def audience_label(session: Session, survey: Survey) -> str:
    if survey.audience == "community":
        return survey.community.name if survey.community else "（社区已删除）"
    if survey.audience == "team":
        return f"{survey.area_team.name}辖区" if survey.area_team else "（队伍已删除）"
    return "全体关注者"


def is_for(session: Session, survey: Survey, follower: Follower) -> bool:
    ids = audience_communities(session, survey)
    return ids is None or follower.community_id in ids


def open_for(session: Session, follower: Follower) -> list[Survey]:
    """Open surveys this follower may answer and has not answered, oldest first."""
    answered = select(SurveyResponse.survey_id).where(SurveyResponse.follower_id == follower.id)
    rows = session.scalars(select(Survey).where(Survey.state == "open", Survey.id.not_in(answered))
                           .order_by(Survey.id))
    return [s for s in rows if is_for(session, s, follower)]


def answered(session: Session, survey_id: int, follower_id: int) -> bool:
    return session.scalar(select(SurveyResponse.id).where(SurveyResponse.survey_id == survey_id,
                                                          SurveyResponse.follower_id == follower_id)) is not None


# ---- opening, inviting, closing ------------------------------------------------------------

def open_and_invite(session: Session, survey: Survey, now: datetime) -> int:
    """Open a draft and record one invitation push per follower in its audience (the push
    kind `survey_invite`; a second call sends nobody twice). Returns how many were invited."""
    if survey.state == "closed":
        raise SurveyError(["问卷已结束"])
    survey.state, survey.opened_at = "open", survey.opened_at or now
    stmt = select(Follower.openid).where(Follower.subscribed.is_(True), Follower.push_blocked.is_(None))
    ids = audience_communities(session, survey)
    if ids is not None:
        stmt = stmt.where(Follower.community_id.in_(ids))
    fields = {"survey": survey.title[:20], "hint": "回复“问卷”即可参与，约1分钟"}
    count = notify_many(session, [dict(openid=o, kind=INVITE_KIND, title="邀请您参加问卷调查", fields=fields,
                                       batch=f"survey-{survey.id}", dedup_key=f"survey:{survey.id}:{o}")
                                  for o in session.scalars(stmt.order_by(Follower.id))])
    survey.invited += count
    session.flush()
    return count


def close(survey: Survey, now: datetime) -> None:
    survey.state, survey.closed_at = "closed", now


# ---- answering -----------------------------------------------------------------------------

def submit(session: Session, survey: Survey, follower: Follower, answers: list, now: datetime) -> bool:
    """Keep one answer set (a list, one entry per question); False when this follower had
    already answered (the first set stands). A survey that asks no personal data keeps none:
    long digit runs in free answers are dropped."""
    if answered(session, survey.id, follower.id):
        return False
    if not survey.personal_reason:
        # Not asked for, so not kept: a phone or ID number typed into a free answer.
        answers = [re.sub(r"\d{7,}[\dXx]*", "…", a) if q["kind"] == "text" and isinstance(a, str) else a
                   for q, a in zip(survey.questions, answers)]
    try:
        with session.begin_nested():  # a concurrent first answer of the same person
            session.add(SurveyResponse(survey_id=survey.id, follower_id=follower.id,
                                       community_id=follower.community_id, answers=answers, created_at=now))
            session.flush()
    except Exception as e:  # IntegrityError from either database
        if "unique" in str(e).lower() or "duplicate" in str(e).lower():
            return False
        raise
    return True


# ---- results -------------------------------------------------------------------------------

@dataclass
class QuestionResult:
    number: int
    question: dict
    answered: int
    counts: list[tuple[str, int]]  # choice questions: (option, how many chose it)
    stats: dict  # number questions: count, mean, median, min, max
    texts: list[str]  # text questions: latest answers, masked


def mask_digits(text: str) -> str:
    """Long digit runs (a phone or ID number typed into a free answer) shown masked."""
    return re.sub(r"\d{7,}", lambda m: m.group(0)[:2] + "*" * (len(m.group(0)) - 4) + m.group(0)[-2:], text)


def responses(session: Session, survey: Survey) -> list[SurveyResponse]:
    return list(session.scalars(select(SurveyResponse).where(SurveyResponse.survey_id == survey.id)
                                .order_by(SurveyResponse.id)))


def results(session: Session, survey: Survey, text_limit: int = 30) -> tuple[int, list[QuestionResult]]:
    rows = responses(session, survey)
    out = []
    for i, q in enumerate(survey.questions):
        given = [r.answers[i] for r in rows if i < len(r.answers) and r.answers[i] not in (None, "", [])]
        counts, stats, texts = [], {}, []
        if q["kind"] in ("single", "multi"):
            chosen = [v for g in given for v in (g if isinstance(g, list) else [g])]
            counts = [(o, chosen.count(o)) for o in q["options"]]
        elif q["kind"] == "number":
            nums = [g for g in given if isinstance(g, int)]
            if nums:
                stats = {"count": len(nums), "mean": round(sum(nums) / len(nums), 1), "median": median(nums),
                         "min": min(nums), "max": max(nums)}
        else:
            texts = [mask_digits(str(g)) for g in given[-text_limit:]][::-1]
        out.append(QuestionResult(i + 1, q, len(given), counts, stats, texts))
    return len(rows), out


def export_rows(session: Session, survey: Survey) -> tuple[list[str], list[list]]:
    """One row per answer set: when, community, then each answer (free text masked)."""
    names = dict(session.execute(select(Community.id, Community.name)).all())
    columns = ["提交时间", "社区"] + [f"{i}. {q['text']}" for i, q in enumerate(survey.questions, 1)]
    out = []
    for r in responses(session, survey):
        row = [r.created_at.astimezone(CHINA).strftime("%Y-%m-%d %H:%M"), names.get(r.community_id, "")]
        for i, q in enumerate(survey.questions):
            v = r.answers[i] if i < len(r.answers) else None
            if isinstance(v, list):
                v = "、".join(v)
            row.append(mask_digits(str(v)) if q["kind"] == "text" and v else ("" if v is None else v))
        out.append(row)
    return columns, out


def answer_counts_by_word(session: Session, since: datetime | None = None,
                          until: datetime | None = None) -> dict[str, int]:
    """How often each chosen option of every choice question was picked (all surveys): the
    demand side of the needs report matches these against sub-category names."""
    stmt = select(Survey.questions, SurveyResponse.answers).join(Survey, Survey.id == SurveyResponse.survey_id)
    if since is not None:
        stmt = stmt.where(SurveyResponse.created_at >= since)
    if until is not None:
        stmt = stmt.where(SurveyResponse.created_at < until)
    counts: dict[str, int] = {}
    for questions, answers in session.execute(stmt):
        for q, a in zip(questions, answers):
            if q["kind"] in ("single", "multi") and a:
                for v in a if isinstance(a, list) else [a]:
                    counts[v] = counts.get(v, 0) + 1
    return counts


def count_open(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Survey).where(Survey.state == "open")) or 0


def scoped(team_ids, stmt=None):
    """Surveys owned by a team of the subtree."""
    stmt = select(Survey) if stmt is None else stmt
    return stmt.where(Survey.team_id.in_(team_ids))



def erase_for_follower(session: Session, follower_id: int) -> None:
    """On unsubscribe: answers to surveys that asked personal data go; the others stay as
    counts, no longer tied to the person."""
    personal = select(Survey.id).where(Survey.personal_reason != "")
    session.execute(delete(SurveyResponse).where(SurveyResponse.follower_id == follower_id,
                                                 SurveyResponse.survey_id.in_(personal)))
    session.execute(update(SurveyResponse).where(SurveyResponse.follower_id == follower_id)
                    .values(follower_id=None))

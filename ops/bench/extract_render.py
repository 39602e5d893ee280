"""Writing one development-set document in a shape: prose, e-mail, table, form or bullets."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from ops.bench.extract_filler import ADDED_FILLER, TARGET_WORDS, document_words

_EN_NUMBERS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
               "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen"]  # fmt: skip
_ZH_NUMBERS = "零一二三四五六七八九十"


@dataclass
class Facts:
    """A document's gold values, their written spellings and the generator's random source."""

    schema: str
    lang: str
    gold: dict[str, Any]
    shown: dict[str, str | None]
    rng: random.Random
    seed: str  # seeds the document's own stream (ops/bench/extract_filler.py's sentences)


def _years(n: int, lang: str, rng: random.Random) -> str:
    if lang == "en":
        word = _EN_NUMBERS[n] if n < len(_EN_NUMBERS) and rng.random() < 0.5 else str(n)
        return f"{word} years"
    word = (_ZH_NUMBERS[n] if n <= 10 else f"十{_ZH_NUMBERS[n - 10]}") if n < 20 else str(n)
    return f"{word if rng.random() < 0.5 else n}年"


def _join(items: list[str], lang: str) -> str:
    if lang == "zh":
        return "、".join(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _invoice_words(en: bool, g: dict[str, Any], s: dict[str, Any]) -> tuple[list[str], list[str]]:
    if en:
        prose = [
            f"{g['vendor']} issued invoice {g['invoice_number']} on {s['issue_date']}.",
            f"It covers {_join(g['items'], 'en')}.",
            f"The subtotal is {s['subtotal']} and tax comes to {s['tax']}, "
            f"for a total of {s['total']}.",
            f"Payment is due {s['due_date']}." if s["due_date"] else "It is payable on receipt.",
            "Our records show the invoice as paid in full."
            if g["paid"]
            else "The amount is still outstanding.",
        ]
        filler = [
            "Please quote the invoice number on every payment and letter.",
            "Bank transfer details are printed on the back of this page.",
            "Disputes about quantities must be raised within ten days of delivery.",
            "Prices include packaging and standard delivery to the address on file.",
            "Our warehouse is closed on public holidays; deliveries resume the next working day.",
            "A copy of this document has been sent to your purchasing department.",
            "Returns are accepted only with the original delivery note attached.",
            "We now accept payment by card through the customer portal as well.",
            "Questions about this bill go to our accounts team, Monday to Friday.",
            "Late payments may incur interest at 1.5 percent per month.",
            "Thank you for your continued business; we value working with you.",
            "Goods remain our property until payment has been received in full.",
            f"This copy was printed on {s['sent']} for your records.",
        ]
    else:
        prose = [
            f"{g['vendor']}于{s['issue_date']}开具发票，发票号码{g['invoice_number']}。",
            f"本次开票项目包括{_join(g['items'], 'zh')}。",
            f"不含税金额{s['subtotal']}，税额{s['tax']}，价税合计{s['total']}。",
            f"请于{s['due_date']}前付款。" if s["due_date"] else "本发票见票即付。",
            "该款项已全额付清。" if g["paid"] else "该款项尚未支付。",
        ]
        filler = [
            "付款时请注明发票号码，以便财务核对。",
            "如对发票内容有疑问，请在收到后七个工作日内联系我司财务部。",
            "本公司开户银行及账号信息详见发票背面。",
            "逾期付款将按合同约定收取滞纳金。",
            "货物验收如有异议，请于收货后十日内提出。",
            "本发票金额已包含包装及运输费用。",
            "节假日期间仓库暂停发货，顺延至下一个工作日。",
            "本单据复印件已同时发送至贵司采购部门。",
            "感谢贵公司一直以来的信任与支持。",
            f"本副本打印于{s['sent']}，仅供存档。",
        ]
    return prose, filler


def _invoice(f: Facts) -> tuple[list[tuple[str, str]], list[str], list[str]]:
    g, s, en = f.gold, f.shown, f.lang == "en"
    paid = ("PAID in full" if g["paid"] else "payment outstanding") if en else (
        "已付款" if g["paid"] else "未付款")  # fmt: skip
    due = s["due_date"] or ("payable on receipt" if en else "见票即付")
    pairs = [
        ("Vendor" if en else "开票单位", g["vendor"]),
        ("Invoice No." if en else "发票号码", g["invoice_number"]),
        ("Invoice date" if en else "开票日期", s["issue_date"] or ""),
        ("Due date" if en else "付款期限", due),
        ("Items" if en else "项目", _join(g["items"], f.lang)),
        ("Subtotal" if en else "不含税金额", s["subtotal"] or ""),
        ("Tax (13%)" if en else "税额(13%)", s["tax"] or ""),
        ("Total due" if en else "价税合计", s["total"] or ""),
        ("Status" if en else "状态", paid),
    ]
    prose, filler = _invoice_words(en, g, s)
    return pairs, prose, filler


def _en_term(term: str | None, s: dict[str, Any]) -> str:
    if term:
        return f" and runs for {term}, ending on {s['end_date']}."
    return " and continues until either party gives notice."


def _contract_words(
    en: bool, g: dict[str, Any], s: dict[str, Any], parties: str, term: str | None, city: str | None
) -> tuple[list[str], list[str]]:
    if en:
        prose = [
            f"This {s['type_word']} is made between {parties} and was signed on "
            f"{s['signed_date']}.",
            f"It takes effect on {s['start']}" + _en_term(term, s),
            f"The total contract value is {s['value']}.",
        ]
        if city:
            prose.append(f"Disputes shall be settled by the courts of {city}.")
        filler = [
            "Each party confirms it has the authority to enter into this agreement.",
            "Notices must be given in writing to the addresses listed in Schedule 1.",
            "Neither party may assign its rights without the other party's written consent.",
            "Confidential information shall not be disclosed to third parties.",
            "This agreement replaces all earlier discussions between the parties.",
            "Amendments are valid only when signed by both parties.",
            "If any clause is found invalid, the remaining clauses stay in force.",
            "Each party bears its own costs of preparing this agreement.",
            "Force majeure events suspend the affected obligations for their duration.",
            "Headings are for convenience only and do not affect interpretation.",
            "This agreement may be signed in counterparts, each of which is an original.",
            "Payments shall be made by bank transfer within thirty days of invoice.",
        ]
    else:
        prose = [
            f"本{s['type_word']}由{parties}于{s['signed_date']}签订。",
            f"合同自{s['start']}起生效"
            + (f"，期限{term}，至{s['end_date']}终止。" if term else "，为无固定期限合同。"),
            f"合同总金额为{s['value']}。",
        ]
        if city:
            prose.append(f"因本合同发生的争议，提交{city}仲裁委员会仲裁。")
        filler = [
            "双方应本着诚实信用原则履行合同义务。",
            "未经对方书面同意，任何一方不得转让本合同项下的权利。",
            "双方对合同内容及履行过程中知悉的商业秘密负有保密义务。",
            "本合同一式两份，双方各执一份，具有同等法律效力。",
            "合同的修改须经双方书面确认后方可生效。",
            "本合同任何条款无效，不影响其他条款的效力。",
            "因不可抗力导致不能履行的，双方互不承担违约责任。",
            "本合同未尽事宜，双方可另行签订补充协议。",
            "款项应在收到发票后三十日内以银行转账方式支付。",
        ]
    return prose, filler


def _contract(f: Facts) -> tuple[list[tuple[str, str]], list[str], list[str]]:
    g, s, en = f.gold, f.shown, f.lang == "en"
    parties = _join(g["parties"], f.lang)
    term = _years(g["term_months"], "en", f.rng).replace("years", "months") if en and g[
        "term_months"] else (f"{g['term_months']}个月" if g["term_months"] else None)  # fmt: skip
    end = s["end_date"] or ("no fixed end date" if en else "无固定期限")
    city = g["governing_city"]
    pairs = [
        ("Agreement" if en else "合同名称", s["type_word"] or ""),
        ("Parties" if en else "合同各方", parties),
        ("Date signed" if en else "签订日期", s["signed_date"] or ""),
        ("Effective from" if en else "生效日期", s["start"] or ""),
        ("Expires" if en else "终止日期", end),
        ("Contract value" if en else "合同金额", s["value"] or ""),
    ]
    if term:
        pairs.append(("Term" if en else "期限", term))
    if city:
        pairs.append(
            ("Governing courts" if en else "争议解决", city if en else f"{city}仲裁委员会")
        )
    prose, filler = _contract_words(en, g, s, parties, term, city)
    return pairs, prose, filler


def _news_words(
    en: bool, g: dict[str, Any], s: dict[str, Any], story: dict[str, Any], orgs: str
) -> tuple[list[str], list[str]]:
    if en:
        prose = [
            g["headline"],
            f"Published {s['published']}.",
            f"On {s['event_date']}, {orgs} made news in {g['location']}. {story['body']}",
        ]
        if s["amount"]:
            prose.append(f"The figure involved is {s['amount']}, according to a statement.")
        if g["attendees"] is not None:
            prose.append(f"About {g['attendees']:,} people attended.")
        filler = [
            "Officials said more details would follow in the coming weeks.",
            "Reporters were not allowed to ask questions after the statement.",
            "Observers called it one of the most significant steps this year.",
            "Local residents gave mixed reactions when asked about the news.",
            "A spokesperson declined to comment on the timetable.",
            "The announcement came after months of negotiations behind closed doors.",
            "Critics warned that costs could rise if the schedule slips again.",
            "Similar projects elsewhere have taken several years to show results.",
            "The news was welcomed by business groups in the region.",
            "Further coverage is available in our weekend edition.",
            "Photographs from the day were shared widely online.",
        ]
    else:
        prose = [
            g["headline"],
            f"（本报{s['published']}电）",
            f"{s['event_date']}，{orgs}在{g['location']}举行相关活动。{story['body']}",
        ]
        if s["amount"]:
            prose.append(f"据介绍，涉及金额达{s['amount']}。")
        if g["attendees"] is not None:
            prose.append(f"现场约有{g['attendees']}人参加。")
        filler = [
            "有关负责人表示，后续细节将在近期公布。",
            "业内人士认为，这一举措将对行业产生深远影响。",
            "不少市民对此表示关注，并在社交媒体上热烈讨论。",
            "记者了解到，相关配套措施正在加紧制定。",
            "此次活动是当地今年以来规模较大的一次。",
            "有专家提醒，相关成本可能随工期推迟而上升。",
            "当地企业普遍对此表示欢迎。",
            "更多报道请关注本报周末版。",
        ]
    return prose, filler


def _news(f: Facts) -> tuple[list[tuple[str, str]], list[str], list[str]]:
    g, s, en = f.gold, f.shown, f.lang == "en"
    story = next(x for x in _stories(f) if x["headline"] == g["headline"])
    orgs = _join(g["organizations"], f.lang)
    pairs = [
        ("Headline" if en else "标题", g["headline"]),
        ("Published" if en else "发布日期", s["published"] or ""),
        ("Event date" if en else "事件日期", s["event_date"] or ""),
        ("Location" if en else "地点", g["location"]),
        ("Organizations" if en else "相关机构", orgs),
    ]
    if s["amount"]:
        pairs.append(("Amount" if en else "金额", s["amount"]))
    if g["attendees"] is not None:
        pairs.append(("Attendance" if en else "参与人数", f"{g['attendees']:,}"))
    prose, filler = _news_words(en, g, s, story, orgs)
    return pairs, prose, filler


def _stories(f: Facts) -> list[dict[str, Any]]:
    from ops.bench.extract_pools import POOLS

    stories: list[dict[str, Any]] = POOLS["news"][f.lang]["stories"]
    return stories


def _person_words(
    en: bool, g: dict[str, Any], s: dict[str, Any], langs: list[str], years: str, said: str
) -> tuple[list[str], list[str]]:
    if en:
        prose = [f"{g['name']} was born on {s['birth_date']} and lives in {g['city']}."]
        if g["occupation"]:
            prose.append(f"{g['name'].split()[0]} works as a {g['occupation']} at {g['employer']}.")
        prose += [
            f"{said} Languages: {_join(langs, 'en')}; {langs[0]} is the one used most.",
            f"Professional experience: {years}.",
        ]
        if g["email"]:
            prose.append(f"Contact: {g['email']}.")
        filler = [
            "References are available on request.",
            "Interests include reading, cooking and long walks.",
            f"Friends describe {g['name'].split()[0]} as patient and curious.",
            "This profile was last updated by the candidate in the spring.",
            "Availability for new projects can be discussed by phone or email.",
            "Has completed several certificates in project management and safety.",
            "Prefers hybrid work with two days a week in the office.",
            "Holds a full driving licence and is willing to travel.",
            "Enjoys mentoring junior colleagues and running team workshops.",
            "Has given talks at regional industry meetups.",
        ]
    else:
        prose = [f"{g['name']}，{s['birth_date']}出生，现居{g['city']}。"]
        if g["occupation"]:
            prose.append(f"现任{g['employer']}{g['occupation']}。")
        prose += [
            f"{said}会说{_join(langs, 'zh')}，其中最常用的是{langs[0]}。",
            f"工作经验{years}。",
        ]
        if g["email"]:
            prose.append(f"联系邮箱：{g['email']}。")
        filler = [
            "如需推荐信，可另行提供。",
            "兴趣爱好包括阅读、烹饪和徒步。",
            "本简介由本人于今年春季更新。",
            "具备驾驶执照，可接受出差。",
            "乐于指导新同事，曾多次组织内部培训。",
            "可通过电话或邮件沟通新的工作机会。",
            "持有多项专业资格证书。",
        ]
    return prose, filler


def _person(f: Facts) -> tuple[list[tuple[str, str]], list[str], list[str]]:
    g, s, en = f.gold, f.shown, f.lang == "en"
    langs = g["languages"]
    years = _years(g["years_experience"], f.lang, f.rng)
    said = next(p["said"] for p in _people(f) if p["name"] == g["name"])
    pairs = [
        ("Name" if en else "姓名", g["name"]),
        ("Born" if en else "出生日期", s["birth_date"] or ""),
    ]
    pairs += [("City" if en else "现居城市", g["city"])]
    if g["occupation"]:
        pairs.append(("Position" if en else "职位", g["occupation"]))
    if g["employer"]:
        pairs.append(("Employer" if en else "工作单位", g["employer"]))
    pairs += [("Languages" if en else "语言", _join(langs, f.lang)),
              ("Experience" if en else "工作经验", years)]  # fmt: skip
    if g["email"]:
        pairs.append(("Email" if en else "邮箱", g["email"]))
    # Languages named twice: a reader lists each once; a looping decoder does not stop.
    prose, filler = _person_words(en, g, s, langs, years, said)
    return pairs, prose, filler


def _people(f: Facts) -> list[dict[str, Any]]:
    from ops.bench.extract_pools import POOLS

    people: list[dict[str, Any]] = POOLS["person"][f.lang]["people"]
    return people


_PARTS = {"invoice": _invoice, "contract": _contract, "news": _news, "person": _person}


def _body(f: Facts, shape: str, pairs: list[tuple[str, str]], prose: list[str]) -> str:
    en = f.lang == "en"
    if shape == "form":
        return "\n".join(f"{label}: {value}" for label, value in pairs)
    if shape == "table":
        head = "| Field | Value |\n|---|---|" if en else "| 项目 | 内容 |\n|---|---|"
        return head + "\n" + "\n".join(f"| {label} | {value} |" for label, value in pairs)
    if shape == "bullets":
        return "\n".join(f"- {label}: {value}" for label, value in pairs)
    if f.schema == "news":  # a headline stands on its own line
        return prose[0] + "\n" + (" " if en else "").join(prose[1:])
    return (" " if en else "").join(prose)


def _dress(f: Facts, shape: str, subject: str, body: str, notes: list[str]) -> str:
    en = f.lang == "en"
    text = body + "\n\n" + (" " if en else "").join(notes)
    if shape == "email":
        sent = f.shown.get("sent") or f.shown.get("published") or f.shown.get("start") or ""
        header = (
            f"From: office@example.com\nTo: records@example.com\nDate: {sent}\n"
            f"Subject: {subject}\n\nHello,\n\n"
            if en
            else f"发件人：office@example.cn\n收件人：records@example.cn\n日期：{sent}\n"
            f"主题：{subject}\n\n您好：\n\n"
        )
        text = header + text + ("\n\nBest regards,\nThe office team" if en else "\n\n此致\n敬礼")
    return text.strip()


def render_fields(f: Facts, shape: str) -> str:
    """The document text of `f` in `shape`: its values, all its distractors, neutral sentences.

    Every sentence of the schema's own filler (distractors among them) is used; sentences from
    extract_filler.py are added until the document reaches a length drawn for it.
    """
    pairs, prose, filler = _PARTS[f.schema](f)
    body = _body(f, shape, pairs, prose)
    # This shuffle of the main stream is kept as the first version of the set made it: values are
    # drawn from the same stream, so the gold of every later document stays as committed.
    notes = list(filler)
    f.rng.shuffle(notes)
    own = random.Random(f.seed)  # the document's own stream orders and picks what was added
    target = own.randint(*TARGET_WORDS)
    added = list(ADDED_FILLER[f.schema][f.lang])
    own.shuffle(added)
    while added and document_words(_dress(f, shape, pairs[0][1], body, notes), f.lang) < target:
        notes.append(added.pop())
    own.shuffle(notes)
    return _dress(f, shape, pairs[0][1], body, notes)

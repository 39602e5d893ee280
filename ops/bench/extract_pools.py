"""Names, stories and people of the development set (what the documents are about)."""

from __future__ import annotations

from typing import Any


def _story(
    headline: str, location: str, category: str, orgs: list[str], attendees: int | None, body: str
) -> dict[str, Any]:
    return {
        "headline": headline,
        "location": location,
        "category": category,
        "organizations": orgs,
        "attendees": attendees,
        "body": body,
    }


def _person(
    name: str,
    city: str,
    occupation: str | None,
    employer: str | None,
    languages: list[str],
    years: int,
    email: str | None,
    said: str,
) -> dict[str, Any]:
    return {
        "name": name,
        "city": city,
        "occupation": occupation,
        "employer": employer,
        "languages": languages,
        "years": years,
        "email": email,
        "said": said,
    }


EN_STORIES = [
    _story("Harbor City Opens Its First Offshore Wind Port", "Rotterdam", "business",
           ["Port of Rotterdam", "Vestas"], 1200,
           "The new quay lets turbine blades ship directly to the North Sea farms."),
    _story("Local Clinic Network Adopts Shared Patient Records", "Leeds", "health",
           ["NHS Leeds", "Medway Health"], None,
           "Doctors said the change would end duplicate blood tests for many patients."),
    _story("Startup Raises Funds for Battery Recycling Plant", "Austin", "technology",
           ["Cellcycle", "Northgate Ventures"], None,
           "The plant will recover lithium and cobalt from used phone batteries."),
    _story("City Marathon Sets Participation Record", "Chicago", "sports",
           ["Chicago Runners Club"], 41000,
           "Organisers added two water stations after last year's heat complaints."),
    _story("Parliament Committee Approves Housing Bill", "Ottawa", "politics",
           ["House of Commons", "Canadian Home Builders' Association"], 300,
           "The bill now goes to a final vote before the summer recess."),
    _story("Chipmaker Signs Supply Deal With Carmaker", "Munich", "business",
           ["Infineon", "BMW Group"], None,
           "Analysts expect the deal to ease the shortage of power chips."),
    _story("Hospital Opens New Children's Cancer Ward", "Melbourne", "health",
           ["Royal Children's Hospital"], 150,
           "Families toured the ward, which has 32 beds and a rooftop garden."),
    _story("Cloud Provider Expands Data Centre Campus", "Dublin", "technology",
           ["Azurite Cloud", "EirGrid"], None,
           "The operator said the site will run on contracted wind power."),
]  # fmt: skip

ZH_STORIES = [
    _story("杭州亚运场馆向市民免费开放", "杭州", "sports", ["杭州市体育局"], 8000,
           "首个开放日吸引了大量市民前来健身和参观。"),
    _story("新能源车企完成新一轮融资", "合肥", "business", ["蔚来汽车", "合肥建投"], None,
           "公司表示资金将用于电池研发和海外市场拓展。"),
    _story("三甲医院启用远程会诊中心", "成都", "health", ["四川大学华西医院"], None,
           "县级医院的医生可以通过视频向专家请教疑难病例。"),
    _story("人工智能大会在沪开幕", "上海", "technology", ["上海市经信委", "商汤科技", "华为"], 5000,
           "多家企业在会上发布了面向制造业的大模型应用。"),
    _story("市人大通过城市更新条例", "广州", "politics", ["广州市人大常委会"], 60,
           "条例明确了老旧小区改造中居民的表决程序。"),
    _story("跨境电商产业园签约落地", "郑州", "business", ["郑州航空港区管委会", "京东物流"], None,
           "园区预计明年投入使用，可容纳上百家企业。"),
    _story("城市马拉松鸣枪开跑", "厦门", "sports", ["厦门市体育局", "中国田径协会"], 30000,
           "赛道沿环岛路延伸，吸引了来自三十多个国家的选手。"),
    _story("芯片企业发布新一代处理器", "深圳", "technology", ["海思半导体"], 1200,
           "新处理器采用更先进的工艺，功耗降低约三成。"),
]  # fmt: skip

EN_PEOPLE = [
    _person("Priya Raman", "Chennai", "data analyst", "Infosys", ["English", "Tamil", "Hindi"], 8,
            "priya.raman@example.com", "She grew up speaking Tamil at home."),
    _person("Tom Becker", "Hamburg", None, None, ["German", "English"], 15, None,
            "Tom enjoys sailing on the Elbe and restoring old bicycles."),
    _person("Lucia Moreno", "Valencia", "architect", "Moreno Estudio", ["Spanish", "Catalan",
            "English"], 12, "lucia@moreno-estudio.es", "Her firm designs schools."),
    _person("Daniel Okoye", "Lagos", "civil engineer", "Julius Berger", ["English", "Igbo",
            "Yoruba"], 20, None, "Daniel has worked on three bridges across the lagoon."),
    _person("Mei Tanaka", "Osaka", "nurse", "Osaka General Hospital", ["Japanese", "English"], 6,
            "mei.tanaka@example.jp", "She volunteers at a weekend clinic."),
    _person("Ahmed Saleh", "Cairo", None, None, ["Arabic", "French", "English"], 0,
            "ahmed.saleh@example.org", "Ahmed recently finished his master's degree."),
    _person("Grace Liu", "Vancouver", "product manager", "Shopify", ["English", "Mandarin",
            "Cantonese"], 10, None, "Grace mentors new managers in her spare time."),
    _person("Jonas Berg", "Oslo", "teacher", "Oslo Cathedral School", ["Norwegian", "English",
            "German"], 25, "jonas.berg@example.no", "Jonas teaches history and coaches chess."),
]  # fmt: skip

ZH_PEOPLE = [
    _person("王丽华", "北京", "软件工程师", "字节跳动", ["普通话", "英语"], 7,
            "wanglihua@example.cn", "她业余时间喜欢跑步和摄影。"),
    _person("陈志强", "广州", "会计师", "广州白云会计师事务所", ["粤语", "普通话", "英语"], 18,
            None, "他曾参与多家上市公司的年度审计。"),
    _person("李娜", "上海", None, None, ["普通话", "英语", "韩语"], 3, "lina2024@example.cn",
            "她目前在准备研究生入学考试。"),
    _person("张伟", "成都", "中学教师", "成都七中", ["普通话", "四川话"], 22, None,
            "他带的班级多次获得市级奖项。"),
    _person("刘洋", "深圳", "产品经理", "腾讯", ["普通话", "英语", "日语"], 9,
            "liuyang@example.com", "他负责一款面向老年人的社交应用。"),
    _person("赵敏", "西安", "护士", "西安交通大学第一附属医院", ["普通话"], 11, None,
            "她在急诊科工作，经常上夜班。"),
    _person("黄俊杰", "厦门", None, None, ["闽南语", "普通话", "英语"], 0, None,
            "他刚从大学毕业，正在寻找第一份工作。"),
    _person("孙悦", "杭州", "律师", "浙江天册律师事务所", ["普通话", "英语", "德语"], 14,
            "sunyue@example.com", "她擅长处理跨境并购纠纷。"),
]  # fmt: skip

POOLS: dict[str, dict[str, dict[str, Any]]] = {
    "invoice": {
        "en": {
            "names": ["Harbor Lane Supplies Ltd", "Northwind Office Co.", "Bluefield Catering",
                      "Kestrel Print Works", "Alder & Finch Consulting", "Summit Cloud Services",
                      "Redwood Hardware Inc.", "Lumen Lab Equipment"],
            "items": ["A4 copy paper", "toner cartridges", "desk lamps", "cloud hosting",
                      "on-site support hours", "catering for 40 guests", "business cards",
                      "safety gloves", "laptop stands", "network cables"],
            "currencies": ["USD", "EUR", "GBP", "USD", "JPY", "USD", "EUR", "CNY"],
            "number_prefix": "INV",
        },
        "zh": {
            "names": ["上海明达办公用品有限公司", "杭州云栖信息技术有限公司",
                      "深圳华星电子有限公司", "北京嘉禾餐饮管理有限公司",
                      "成都青松印务有限公司", "广州南海物流有限公司",
                      "苏州恒信机械有限公司", "武汉长江咨询有限公司"],
            "items": ["A4复印纸", "硒鼓", "台灯", "云服务器租用", "上门维护服务", "会议茶歇",
                      "名片印刷", "劳保手套", "显示器支架", "网线"],
            "currencies": ["CNY", "CNY", "CNY", "USD", "CNY", "CNY", "EUR", "CNY"],
            "number_prefix": "FP",
        },
    },
    "contract": {
        "en": {
            "parties": ["Greenfield Properties LLC", "Maria Alvarez", "Orbit Logistics Ltd",
                        "First Harbor Bank", "Jacob Stein", "Nova Foods plc",
                        "Cedar Software GmbH", "Elena Petrova"],
            "types": [("lease", "Lease Agreement"), ("employment", "Employment Contract"),
                      ("service", "Master Services Agreement"), ("sale", "Sale and Purchase "
                      "Agreement"), ("loan", "Loan Agreement")],
            "cities": ["London", "New York", "Singapore", "Frankfurt"],
            "currencies": ["USD", "GBP", "EUR", "USD", "CNY", "USD", "GBP", "EUR"],
        },
        "zh": {
            "parties": ["北京恒远置业有限公司", "李明", "上海顺达物流有限公司", "招商银行深圳分行",
                        "王芳", "广东美味食品股份有限公司", "南京智云软件有限公司", "刘强"],
            "types": [("lease", "房屋租赁合同"), ("employment", "劳动合同"),
                      ("service", "技术服务合同"), ("sale", "买卖合同"), ("loan", "借款合同")],
            "cities": ["北京", "上海", "深圳", "杭州"],
            "currencies": ["CNY", "CNY", "CNY", "USD", "CNY", "CNY", "EUR", "CNY"],
        },
    },
    "news": {"en": {"stories": EN_STORIES, "currencies": ["EUR", "GBP", "USD", "USD", "USD",
                                                          "EUR", "USD", "EUR"]},
             "zh": {"stories": ZH_STORIES, "currencies": ["CNY"] * 8}},
    "person": {"en": {"people": EN_PEOPLE}, "zh": {"people": ZH_PEOPLE}},
}  # fmt: skip

"""Known answers: addresses as people write them -> the division they name (checked by name)."""

import polars as pl
import pytest

from govdb.standards.addresses import parse_addresses
from govdb.standards.divisions import ancestors

# (address, hint, expected): expected is "ambiguous", "unresolved", or the names of the deepest
# division found and its ancestors, deepest first (as many as the case needs).
CASES = [
    ("广东省佛山市南海区桂城街道南海大道123号", None, ("桂城街道", "南海区", "佛山市")),
    ("广东佛山南海桂城", None, ("桂城街道", "南海区")),
    ("佛山市南海区狮山镇", None, ("狮山镇", "南海区")),
    ("南海区大沥镇", None, ("大沥镇", "南海区")),
    ("广东省佛山市南海区狮山镇朗沙社区南桂路178号", None, ("朗沙社区居委会", "狮山镇", "南海区")),
    ("桂城街道花苑社区３栋", "440605", ("花苑社区居委会", "桂城街道")),
    ("桂城", "440605", ("桂城街道", "南海区")),
    ("北京市朝阳区望京街道阜通东大街6号", None, ("望京街道", "朝阳区")),
    ("北京朝阳区", None, ("朝阳区", "北京市")),
    ("吉林省长春市朝阳区", None, ("朝阳区", "长春市")),
    ("朝阳区", None, "ambiguous"),
    ("朝阳区", "110000", ("朝阳区", "北京市")),
    ("朝阳区", "220100", ("朝阳区", "长春市")),
    ("长安区", None, "ambiguous"),
    ("石家庄长安区", None, ("长安区", "石家庄市")),
    ("西安市长安区", None, ("长安区", "西安市")),
    ("鼓楼区", None, "ambiguous"),
    ("南京市鼓楼区", None, ("鼓楼区", "南京市")),
    ("福州鼓楼区", None, ("鼓楼区", "福州市")),
    ("湖南长沙芙蓉区", None, ("芙蓉区", "长沙市")),
    ("湖南省长沙市岳麓区", None, ("岳麓区", "长沙市")),
    ("上海浦东新区张江镇", None, ("张江镇", "浦东新区")),
    ("上海市黄浦区南京东路街道", None, ("南京东路街道", "黄浦区")),
    ("杭州市钱塘区下沙街道", None, ("下沙街道", "钱塘区")),
    ("浙江杭州西湖区", None, ("西湖区", "杭州市")),
    ("济南市莱芜区", None, ("莱芜区", "济南市")),
    ("莱芜区", None, ("莱芜区",)),
    ("贵州省六盘水市盘州市", None, ("盘州市", "六盘水市")),
    ("广东省东莞市虎门镇", None, ("虎门镇", "东莞市")),
    ("东莞虎门", None, ("虎门镇", "东莞市")),
    ("海南省儋州市那大镇", None, ("那大镇", "儋州市")),
    ("广东省深圳市南山区粤海街道", None, ("粤海街道", "南山区", "深圳市")),
    ("深圳南山粤海街道科技园", None, ("粤海街道", "南山区")),
    ("广州市天河区", None, ("天河区", "广州市")),
    ("广州天河", None, ("天河区", "广州市")),
    ("四川省成都市武侯区", None, ("武侯区", "成都市")),
    ("成都武侯区", None, ("武侯区", "成都市")),
    ("新疆维吾尔自治区乌鲁木齐市天山区", None, ("天山区", "乌鲁木齐市")),
    ("新疆乌鲁木齐天山区", None, ("天山区", "乌鲁木齐市")),
    ("内蒙古呼和浩特市回民区", None, ("回民区", "呼和浩特市")),
    ("广西南宁市青秀区", None, ("青秀区", "南宁市")),
    ("西藏拉萨市城关区", None, ("城关区", "拉萨市")),
    ("宁夏银川市兴庆区", None, ("兴庆区", "银川市")),
    ("延边朝鲜族自治州延吉市", None, ("延吉市", "延边朝鲜族自治州")),
    ("吉林延边延吉", None, ("延吉市", "延边朝鲜族自治州")),
    ("云南省西双版纳傣族自治州景洪市", None, ("景洪市", "西双版纳傣族自治州")),
    ("天津市和平区", None, ("和平区", "天津市")),
    ("重庆市万州区", None, ("万州区", "重庆市")),
    ("湖北省武汉市武昌区", None, ("武昌区", "武汉市")),
    ("武汉洪山区", None, ("洪山区", "武汉市")),
    ("江苏苏州工业园区", None, ("苏州市",)),
    ("浙江省杭州市江干区", None, ("上城区", "杭州市")),  # 江干区 merged into 上城区 in 2021
    ("北京市宣武区", None, ("西城区", "北京市")),  # merged in 2010
    ("上海市闸北区", None, ("静安区", "上海市")),  # merged in 2015
    ("广东省佛山市南海市桂城街道", None, ("桂城街道", "南海区")),  # 南海市 became 南海区 in 2002
    ("成都高新区天府大道", None, ("成都市",)),
    ("河南省郑州市金水区", None, ("金水区", "郑州市")),
    ("郑州金水区", None, ("金水区", "郑州市")),
    ("山东青岛市南区", None, ("市南区", "青岛市")),
    ("辽宁省沈阳市和平区", None, ("和平区", "沈阳市")),
    ("随便写写", None, "unresolved"),
    ("幸福路12号", None, "unresolved"),
    ("", None, "unresolved"),
]


@pytest.mark.parametrize(("address", "hint", "expected"), CASES, ids=[c[0] or "empty" for c in CASES])
def test_address_known_answers(address: str, hint: str | None, expected: object) -> None:
    row = parse_addresses(pl.Series([address]), hint=hint).row(0, named=True)
    if isinstance(expected, str):
        assert row["address_status"] == expected, row
        assert row["division_code"] is None
        return
    assert row["address_status"] == "ok", row
    names = [d.name for d in ancestors(row["division_code"])]
    assert tuple(names[: len(expected)]) == expected, (names, row)


def test_enough_known_answers() -> None:
    assert len(CASES) >= 50


def test_remainder_confidence_and_house_numbers() -> None:
    rows = parse_addresses(
        pl.Series(
            ["广东省佛山市南海区桂城街道南海大道一百二十三号", "桂城街道花苑社区３栋", "湖南长沙芙蓉区"]
        ),
        hint="440605",
    ).to_dicts()
    assert rows[0]["address_rest"] == "南海大道123号" and rows[0]["address_confidence"] > 0.5
    assert rows[1]["address_rest"] == "3栋" and rows[1]["division_level"] == 5
    assert rows[2]["address_status"] == "ok"  # outside the hint, but a complete chain


def test_levels_are_split_out() -> None:
    row = parse_addresses(pl.Series(["广东省佛山市南海区狮山镇朗沙社区"])).row(0, named=True)
    assert row["division_code"].startswith("440605124")
    assert (row["province_code"], row["city_code"], row["county_code"]) == ("440000", "440600", "440605")
    assert row["township_code"] == row["division_code"][:9] and row["village_code"] == row["division_code"]


def test_chunked_parsing_gives_the_same_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    from govdb.standards import addresses

    series = pl.Series([c[0] for c in CASES] * 2)
    whole = parse_addresses(series)
    monkeypatch.setattr(addresses, "CHUNK", 7)
    assert parse_addresses(series).equals(whole)


def test_a_hint_does_not_hide_places_whose_county_the_address_names() -> None:
    text = "山东省济宁市汶上县寅寺镇草桥南村委会233号"
    assert parse_addresses(pl.Series([text]), hint="440605").get_column("division_code").to_list() == [
        parse_addresses(pl.Series([text])).get_column("division_code")[0]
    ]


def test_house_numbers_are_split_off_without_changing_any_answer() -> None:
    from govdb.standards import addresses, house_numbers

    written = [c[0] for c in CASES + PLACED_AND_ROADS] + [
        "广东省佛山市南海区狮山镇朗沙社区12栋3单元501室",
        "南海区桂城街道三号楼5室",  # a Chinese house number stays in the head and is converted there
        "北京市海淀区北三环中路69号院社区3号",  # a village whose name has digits
        "江西省九江市湖口县流泗镇七四0村12号",  # a village name ending in a digit: kept whole
        "123号",
        "佛山市南海区桂城街道A12",
    ]
    texts = addresses.normalize_addresses(pl.Series(written))
    fast = parse_addresses(pl.Series(written))
    whole = (
        pl.DataFrame({"address": texts})
        .join(addresses._lookup(texts, None), on="address", how="left", maintain_order="left")
        .select(
            pl.exclude("address", "address_status", "address_confidence"),
            pl.col("address_status").fill_null("unresolved"),
            pl.col("address_confidence").fill_null(0.0),
        )
        .select(*addresses.PARSED_COLUMNS)
    )
    assert fast.equals(whole)
    assert "七四0" in house_numbers.names_into_house_numbers()
    rests = dict(zip(written, fast.get_column("address_rest"), strict=True))
    assert rests["广东省佛山市南海区狮山镇朗沙社区12栋3单元501室"] == "12栋3单元501室"
    assert rests["南海区桂城街道三号楼5室"] == "3号楼5室"


def test_only_unusual_text_goes_through_nfkc() -> None:
    from govdb.standards.addresses import normalize_addresses

    raw = pl.Series(["桂城街道花苑社区３栋", "桂城街道 花苑社区\t3栋", "桂城街道花苑社区3栋", None, ""])
    out = normalize_addresses(raw)
    assert out.to_list() == ["桂城街道花苑社区3栋", "桂城街道花苑社区3栋", "桂城街道花苑社区3栋", None, ""]
    assert raw[0] == "桂城街道花苑社区３栋"  # the caller's series is left as it was


# (address, hint, division code, level, remaining text): a division's name inside a road's name, or
# after the address was already placed lower, is text; what must keep working around that rule.
PLACED_AND_ROADS = [
    # A road named after the county, a city, another county or another province, after a village.
    ("桂城街道桂一社区南海大道218号", "440605", "440605011001", 5, "南海大道218号"),
    ("桂城街道桂一社区佛山大道8号", "440605", "440605011001", 5, "佛山大道8号"),
    ("桂城街道桂一社区顺德路8号", "440605", "440605011001", 5, "顺德路8号"),
    ("桂城街道桂一社区北京路5号", "440605", "440605011001", 5, "北京路5号"),
    ("南海区桂城街道桂一社区北京路5号", None, "440605011001", 5, "北京路5号"),
    ("广东省佛山市南海区桂城街道桂一社区广州大道8号", None, "440605011001", 5, "广州大道8号"),
    ("佛山市南海区桂城街道南海大道北100号", None, "440605011", 4, "南海大道北100号"),
    # A division named again after a lower level is text too, road word or not.
    ("南海区桂城街道桂一社区南海区政府旁", None, "440605011001", 5, "南海区政府旁"),
    # A county name followed by its township, a city by its county or township, a township by its
    # village, even when the next name starts with a road word (路南区, 道滘镇, 街边社区, 路州村).
    ("南海区桂城街道桂一社区", None, "440605011001", 5, ""),
    ("广东佛山南海桂城", None, "440605011", 4, ""),
    ("唐山市路南区", None, "130202", 3, ""),
    ("台州路桥区", None, "331004", 3, ""),
    ("东莞道滘镇", None, "441900124", 4, ""),
    ("南海区狮山镇街边社区5号", None, "440605124069", 5, "5号"),
    ("顺德乐从路州村", None, "440606103214", 5, ""),
    ("广州市越秀区北京街道", None, "440104003", 4, ""),
    # A street office written with 街 (石牌街 for 石牌街道) is the township, not a road.
    ("广州市天河区石牌街东城社区", None, "440106006002", 5, ""),
    ("南海区桂城街桂一社区", None, "440605011001", 5, ""),
    # A village's bare name followed by a road word is the road's (云山路), the township stays.
    ("广州市花都区新华街道云山路8号", None, "440114001", 4, "云山路8号"),
    ("广州市花都区新华街道云山居委会云山路8号", None, "440114001001", 5, "云山路8号"),
    ("南海区桂城路3号", None, "440605", 3, "桂城路3号"),
    # A county's name at the start of a village's or township's name (新昌村, 凤凰乡) is no county
    # unless something supports it: an ancestor named before it (承德兴隆镇), or its child after it.
    ("兰州市秦川镇新昌村新华路276号", None, "620100", 2, "秦川镇新昌村新华路276号"),
    ("岳阳市凤凰乡凤凰村", None, "430600", 2, "凤凰乡凤凰村"),
    ("承德兴隆镇", None, "130822", 3, "镇"),
    ("南阳镇平县", None, "411324", 3, ""),
]


@pytest.mark.parametrize(
    ("address", "hint", "code", "level", "rest"), PLACED_AND_ROADS, ids=[c[0] for c in PLACED_AND_ROADS]
)
def test_names_in_roads_and_after_the_place_are_text(
    address: str, hint: str | None, code: str, level: int, rest: str
) -> None:
    from govdb.standards import record

    row = parse_addresses(pl.Series([address]), hint=hint).row(0, named=True)
    assert (row["division_code"], row["division_level"], row["address_rest"]) == (code, level, rest), row
    assert row["address_status"] == "ok"
    assert record.parse_address(address, hint) == record.ParsedAddress(code, rest)  # the one-record twin


def test_the_reported_address_is_placed_at_its_village() -> None:
    row = parse_addresses(pl.Series(["桂城街道桂一社区南海大道218号"]), hint="440605").row(0, named=True)
    assert (row["division_code"], row["division_level"], row["address_rest"]) == (
        "440605011001",
        5,
        "南海大道218号",
    )
    assert row["county_code"] == "440605" and row["township_code"] == "440605011"
    assert row["address_confidence"] == 1.0


@pytest.mark.parametrize(
    ("address", "hint"),
    [
        ("南海大道218号", "440605"),  # the county's name in a road's, and nothing else
        ("佛山大道100号", None),
        ("中山路5号", None),
        ("新昌村5号", None),  # a village's name, not 新昌县
        ("桂城街道桂一社区南海大道218号", None),  # no county, no hint: the township cannot be trusted
    ],
)
def test_a_name_inside_a_road_or_village_name_places_nothing(address: str, hint: str | None) -> None:
    from govdb.standards import record

    row = parse_addresses(pl.Series([address]), hint=hint).row(0, named=True)
    assert (row["address_status"], row["division_code"], row["address_rest"]) == ("unresolved", None, address)
    assert record.parse_address(address, hint) == record.ParsedAddress(None, address)

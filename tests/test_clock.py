from vmexit.clock import Clock


def test_cycles_and_inverse():
    c = Clock(1000, 3, 2)  # CPI 1.5
    c.icount = 10
    c.extra = 7
    assert c.now() == 15 + 7
    assert c.icount_when(100) == 62  # 62 * 1.5 = 93 + 7 = 100
    assert c.cycles_at(c.icount_when(100)) >= 100 > c.cycles_at(c.icount_when(100) - 1)
    assert c.icount_when(0) == 10   # never in the past
    c.idle_until(200)
    assert c.now() == 200 and c.idle == 200 - 22

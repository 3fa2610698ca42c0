import os, time, random
from helpers import DAY, NOON_ON_DAY, add_event, current_settings, product, register_shop, writer_for
from include.statistics_export import tasks
from include.statistics_export.handoffs import ShopRef, ShopUnit


def test_profile_unit(db, sandbox, s3, connections):
    rnd = random.Random(1)
    ids = []
    for n in range(200):
        sid = f"shop_{n:04d}"
        products = [
            product(n * 10 + p + 1, variants=rnd.choice([1, 2, 3]), images=1) for p in range(rnd.choice([1, 2, 3]))
        ]
        register_shop(db, sandbox, sid, products)
        add_event(db, sid, str((n * 10 + 1) * 1000 + 1), "PURCHASE", NOON_ON_DAY, "9.90")
        ids.append(sid)
    unit = ShopUnit(1, 1, [ShopRef(s, f"{s.replace('_', '-')}.myshopify.com") for s in ids])
    open("/tmp/unit_ready", "w").write(str(os.getpid()))
    t = time.process_time()
    w = time.perf_counter()
    outcome = tasks.export_unit(unit, writer_for(DAY), current_settings())
    print("UNIT cpu", time.process_time() - t, "wall", time.perf_counter() - w, outcome.phases)
    assert not outcome.failures

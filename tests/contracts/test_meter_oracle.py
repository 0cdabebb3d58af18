"""MeterOracle: its EIP-712 digest against oracle.readings (and a pinned test vector), meter
keys (registration, one key per member and slot, access control, rotation, revocation), every
RejectReason of a reading, re-sent and conflicting readings, mixed batches, the per-slot
hash-chain commitments, sealing slots and malformed batches.

Meter keys are plain secp256k1 keys (not chain accounts), derived from fixed labels so that a
failure replays with the same addresses and signatures. Readings are signed with
``OracleDomain.sign`` and relayed by ``outsider``: anyone may relay, the signature is what
counts. Every reading test runs with the keys of alice, bob and carol registered from slot 0
and slots ``0 .. ENDED - 1`` ended (``metered``).

A rejected reading does not revert: each one is checked by its event and by the oracle's views
(``meter()`` of every key involved and ``slotCommitment()`` of the slots involved) being as
they were. Calls that do revert are checked the same way.
"""

from dataclasses import replace

import brownie
import pytest
from eth_abi import encode
from eth_account import Account
from eth_keys import keys as eth_keys
from eth_utils import keccak, to_checksum_address

from oracle.readings import OracleDomain, Reading, commitment_link, pack

MAX32 = 2**32 - 1
MAX48 = 2**48 - 1
OPEN = MAX32  # untilSlot of a key that was never revoked
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
ZERO_ADDRESS = "0x" + "0" * 40
ENDED = 40  # in reading tests, slots 0 .. ENDED - 1 have ended (``metered``)
IMPORT_WH, EXPORT_WH = 250, 25  # a steady meter's energy per slot
(
    UNKNOWN_METER,
    KEY_NOT_ACTIVE,
    SLOT_NOT_ENDED,
    BAD_SIGNATURE,
    OUT_OF_ORDER,
    REGISTERS_BACKWARDS,
    REGISTERS_MISMATCH,
    SLOT_SEALED,
) = range(8)  # IMeterOracle.RejectReason

READING_TYPE = (
    "Reading(address meter,uint32 slot,uint32 importWh,uint32 exportWh,uint48 importRegisterWh,uint48 exportRegisterWh)"
)
DOMAIN_TYPE = "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"

TESTED_ERRORS = {
    "OracleInvalidRevocation",
    "OracleMalformedBatch",
    "OracleMemberHasMeter",
    "OracleMeterExists",
    "OracleNotAdmin",
    "OracleNotManager",
    "OracleNotMember",
    "OracleNotSealer",
    "OracleSealerSet",
    "OracleUnknownMeter",
    "OracleZeroAddress",
}
# OpenZeppelin's ShortStrings (EIP712): the domain name and version are constants short enough
UNREACHABLE_ERRORS = {"InvalidShortString", "StringTooLong"}


def meter_key(label):
    return Account.from_key(keccak(text=f"Peerwatt test meter {label}"))


KEY_A, KEY_B, KEY_C, KEY_D, KEY_NEW, KEY_NEWER, KEY_STRANGER = (
    meter_key(label) for label in ("alice", "bob", "carol", "dave", "new", "newer", "stranger")
)
KEYS = {key.address: key for key in (KEY_A, KEY_B, KEY_C, KEY_D, KEY_NEW, KEY_NEWER, KEY_STRANGER)}


def steady(key, slot, import_wh=IMPORT_WH, export_wh=EXPORT_WH):
    """The reading of a meter that imported ``import_wh`` and exported ``export_wh`` in every
    slot from slot 0 on: its registers are exactly the sums so far."""
    return Reading(key.address, slot, import_wh, export_wh, import_wh * (slot + 1), export_wh * (slot + 1))


def with_registers(reading, import_register_wh, export_register_wh):
    return replace(reading, import_register_wh=import_register_wh, export_register_wh=export_register_wh)


def manual_digest(chain_id, verifying_contract, reading):
    """EIP-712 digest written out from the spec with eth_abi (independent of encode_typed_data)."""
    domain_separator = keccak(
        encode(
            ["bytes32", "bytes32", "bytes32", "uint256", "address"],
            [
                keccak(text=DOMAIN_TYPE),
                keccak(text="Peerwatt MeterOracle"),
                keccak(text="1"),
                chain_id,
                verifying_contract,
            ],
        )
    )
    struct_hash = keccak(
        encode(
            ["bytes32", "address", "uint32", "uint32", "uint32", "uint48", "uint48"],
            [keccak(text=READING_TYPE), *reading.as_tuple()],
        )
    )
    return keccak(b"\x19\x01" + domain_separator + struct_hash)


def recover(digest, v, r, s):
    """What the ecrecover precompile returns for a 27/28 ``v`` (eth_keys, which, like the
    precompile, accepts high s values)."""
    return eth_keys.Signature(vrs=(v - 27, r, s)).recover_public_key_from_msg_hash(digest).to_checksum_address()


def malleated(signed):
    """The other valid ECDSA signature of the same digest: s' = n - s, v flipped."""
    return replace(signed, s=SECP256K1_N - signed.s, v=55 - signed.v)


def accepted_records(data):
    """The 44-byte records of a ReadingsAccepted event, decoded."""
    data = bytes(data)
    assert len(data) % 44 == 0
    records = []
    for offset in range(0, len(data), 44):
        record = data[offset : offset + 44]
        records.append(
            (
                to_checksum_address(record[:20]),
                *(int.from_bytes(record[a:b], "big") for a, b in ((20, 24), (24, 28), (28, 32), (32, 38), (38, 44))),
            )
        )
    return records


def record(reading):
    """A reading as a ReadingsAccepted record (see :func:`accepted_records`)."""
    return reading.as_tuple()


def commitment_of(oracle, slot):
    """slotCommitment(slot) as (chain as an int, count)."""
    commitment, count = oracle.slotCommitment(slot)
    return int(commitment.hex(), 16), count


def sealed_commitment(values):
    """sealSlot's return value or a SlotSealed event's (chain, count) as (chain as an int, count)."""
    chain, count = values
    return int(chain.hex(), 16), count


def end_slots(clock, market, count):
    """Mines a block at the start of slot ``count`` (unless time is already past it): slots
    before it have ended."""
    epoch, slot_seconds, _ = market.slotClock()
    if clock.now < epoch + count * slot_seconds:
        clock.mine_at(epoch + count * slot_seconds)
    assert market.currentSlot() >= count


# -------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def oracle(MeterOracle, market, admin):
    return MeterOracle.deploy(market, {"from": admin})


@pytest.fixture(scope="module")
def domain(oracle, chain):
    return OracleDomain(chain.id, oracle.address)


@pytest.fixture
def metered(oracle, market, manager, alice, bob, carol, clock):
    """KEY_A, KEY_B and KEY_C registered for alice, bob and carol from slot 0; slots before
    ENDED have ended."""
    for key, member in ((KEY_A, alice), (KEY_B, bob), (KEY_C, carol)):
        oracle.registerMeter(key.address, member, 0, {"from": manager})
    end_slots(clock, market, ENDED)


@pytest.fixture
def sealer(oracle, admin, accounts):
    """accounts[8] (no role, not a member) set as the oracle's sealer, in place of the settlement
    contract."""
    account = accounts[8]
    oracle.setSealer(account, {"from": admin})
    return account


@pytest.fixture
def sign(domain):
    """``sign(reading)``: signed by its meter's key in the oracle's domain, or by ``key``."""

    def signed(reading, key=None):
        return domain.sign(reading, (KEYS[reading.meter] if key is None else key).key)

    return signed


@pytest.fixture
def submit(oracle, outsider):
    """``submit(signed, ...)``: one batch of signed readings (or raw ``bytes``), relayed by the
    outsider."""

    def send(*readings):
        batch = b"".join(item if isinstance(item, bytes) else item.packed() for item in readings)
        return oracle.submitReadings(batch, {"from": outsider})

    return send


@pytest.fixture
def state(oracle, plain):
    """``state(keys, slots)``: the meter views of ``keys`` ("unknown" for a key the view
    rejects with OracleUnknownMeter) and the commitments of ``slots``, to compare before and
    after."""

    def meter_view(key):
        try:
            return plain(oracle.meter(key.address))
        except brownie.exceptions.VirtualMachineError as error:
            assert f"OracleUnknownMeter: {key.address.lower()}" in str(error)
            return "unknown"

    def take(keys, slots):
        return (
            [meter_view(key) for key in keys],
            [plain(oracle.slotCommitment(slot)) for slot in slots],
        )

    return take


@pytest.fixture
def rejected(logs):
    """``rejected(tx)``: the (meter, slot, reason) of its ReadingRejected events."""
    return lambda tx: logs(tx, "ReadingRejected")


@pytest.fixture
def accepted(logs):
    """``accepted(tx)``: the decoded records of its ReadingsAccepted event ([] if none; never
    more than one)."""

    def records(tx):
        events = logs(tx, "ReadingsAccepted")
        assert len(events) <= 1
        return accepted_records(events[0][0]) if events else []

    return records


# ---------------------------------------------------------------- deployment, digest


def test_every_custom_error_is_accounted_for(oracle):
    errors = {entry["name"] for entry in oracle.abi if entry["type"] == "error"}
    assert errors == TESTED_ERRORS | UNREACHABLE_ERRORS


def test_deployment(MeterOracle, oracle, market, admin, chain, plain, error_pattern):
    assert oracle.registry() == market
    assert oracle.PACKED_READING_BYTES() == 109
    assert oracle.ACCEPTED_READING_BYTES() == 44
    assert oracle.READING_TYPEHASH() == "0x" + keccak(text=READING_TYPE).hex().removeprefix("0x")
    fields, name, version, chain_id, verifying_contract, salt, extensions = plain(oracle.eip712Domain())
    assert (bytes(fields), name, version, chain_id, verifying_contract) == (
        b"\x0f",
        "Peerwatt MeterOracle",
        "1",
        chain.id,
        oracle.address,
    )
    assert int(salt.hex(), 16) == 0 and extensions == ()
    assert commitment_of(oracle, 0) == (0, 0)
    assert oracle.sealer() == ZERO_ADDRESS and not oracle.isSealed(0)
    with brownie.reverts(revert_pattern=error_pattern("OracleZeroAddress")):
        MeterOracle.deploy(ZERO_ADDRESS, {"from": admin})


@pytest.mark.parametrize(
    "fields",
    [
        (0, 0, 0, 0, 0),
        (1, 2, 3, 4, 5),
        (MAX32, MAX32, MAX32, MAX48, MAX48),
        # distinct high-bit patterns: a field shifted or masked wrongly changes the digest
        (0x80000001, 0xFEDCBA98, 0x01234567, 0x8000_0000_0001, 0xFFFF_0000_FFFF),
        (0x7FFFFFFF, 1, MAX32, 1, MAX48 - 1),
    ],
)
@pytest.mark.parametrize("meter", [KEY_A.address, "0x" + "ff" * 20, "0x" + "00" * 19 + "01"])
def test_reading_digest_matches_python(oracle, domain, meter, fields):
    reading = Reading(to_checksum_address(meter), *fields)
    expected = domain.digest(reading)
    assert expected == manual_digest(domain.chain_id, domain.verifying_contract, reading)
    assert oracle.readingDigest(reading.as_tuple()) == "0x" + expected.hex()


def test_fixed_test_vector():
    """A pinned vector of oracle.readings, checked against an independent EIP-712 encoding:
    fixed key, chain id 31337 and verifying contract 0xcc..cc."""
    key = Account.from_key("0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
    assert key.address == "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"
    domain = OracleDomain(31337, "0xcccccccccccccccccccccccccccccccccccccccc")
    reading = Reading(key.address, 123_456, 250, 25, 30_000_000, 3_000_000)
    digest = bytes.fromhex("872100bdd51d365bb6f7f05533a89ea9a4a1cb4a9e6f5fe05bc30a632ee35944")
    assert domain.digest(reading) == digest
    assert manual_digest(31337, domain.verifying_contract, reading) == digest

    signed = domain.sign(reading, key.key)  # RFC 6979: deterministic
    assert (signed.v, hex(signed.r), hex(signed.s)) == (
        27,
        "0x8cca412450beae4fecad759cc8d6238dd671fd7d009e951bd902cd4b520fdbbc",
        "0x1f0cb1dd6df88999f0e0c4f4678a7bf6832109bb9887153854826635bb53edb9",
    )
    assert recover(digest, signed.v, signed.r, signed.s) == key.address
    assert signed.packed().hex() == (
        "2c7536e3605d9c16a7a3d7b1898e529396a65c23"  # meter
        "0001e240"  # slot 123456
        "000000fa"  # importWh 250
        "00000019"  # exportWh 25
        "000001c9c380"  # importRegisterWh 30,000,000
        "0000002dc6c0"  # exportRegisterWh 3,000,000
        "8cca412450beae4fecad759cc8d6238dd671fd7d009e951bd902cd4b520fdbbc"  # r
        "1f0cb1dd6df88999f0e0c4f4678a7bf6832109bb9887153854826635bb53edb9"  # s
        "1b"  # v
    )
    assert pack([signed, signed]) == signed.packed() * 2


def test_python_signed_readings_are_accepted(oracle, metered, sign, submit, alice, accepted, logs, plain):
    """Large values in every field survive the packed layout: a first reading (registers at
    least its interval) and the next slot's, exactly on top of it."""
    first = Reading(KEY_A.address, 7, MAX32, MAX32 - 1, MAX48 - 2**32, MAX48 - 2**32 - 5)
    second = Reading(KEY_A.address, 8, 2**32 - 2, 2**32 - 3, MAX48 - 2, MAX48 - 8)
    assert second.import_register_wh == first.import_register_wh + second.import_wh
    assert second.export_register_wh == first.export_register_wh + second.export_wh
    signed = [sign(first), sign(second)]

    tx = submit(*signed)
    assert tx.return_value == 2
    assert [bytes(data) for (data,) in logs(tx, "ReadingsAccepted")] == [
        b"".join(item.packed()[:44] for item in signed)
    ]
    assert accepted(tx) == [record(first), record(second)]
    assert [name for name, _ in logs(tx)] == ["ReadingsAccepted"]
    assert plain(oracle.meter(KEY_A.address)) == (alice, 1, 0, OPEN, True, 8, MAX48 - 2, MAX48 - 8)


# ------------------------------------------------------------------------ meter keys


def test_register_meter(oracle, manager, alice, bob, carol, logs, plain):
    tx = oracle.registerMeter(KEY_A.address, alice, 12, {"from": manager})
    assert logs(tx) == [("MeterRegistered", (KEY_A.address, alice, 12))]
    assert plain(oracle.meter(KEY_A.address)) == (alice, 1, 12, OPEN, False, 0, 0, 0)
    # a key may start at any slot, past ones included (other members: one key per member)
    oracle.registerMeter(KEY_B.address, bob, 0, {"from": manager})
    oracle.registerMeter(KEY_C.address, carol, MAX32, {"from": manager})
    assert plain(oracle.meter(KEY_B.address)) == (bob, 2, 0, OPEN, False, 0, 0, 0)
    assert plain(oracle.meter(KEY_C.address)) == (carol, 3, MAX32, OPEN, False, 0, 0, 0)


def test_meter_view_of_an_unknown_key_reverts(oracle, error_pattern):
    for address in (KEY_STRANGER.address, ZERO_ADDRESS):
        with brownie.reverts(revert_pattern=error_pattern("OracleUnknownMeter", address)):
            oracle.meter(address)


@pytest.mark.parametrize("caller", ["admin", "alice", "outsider"])
def test_only_the_manager_manages_keys(oracle, manager, alice, caller, request, state, error_pattern):
    """The market's admin holds DEFAULT_ADMIN_ROLE, not MANAGER_ROLE: it may not either."""
    caller = request.getfixturevalue(caller)
    oracle.registerMeter(KEY_A.address, alice, 0, {"from": manager})
    before = state([KEY_A, KEY_NEW], [])
    error = error_pattern("OracleNotManager", caller)
    with brownie.reverts(revert_pattern=error):
        oracle.registerMeter(KEY_NEW.address, alice, 0, {"from": caller})
    with brownie.reverts(revert_pattern=error):
        oracle.rotateMeter(KEY_A.address, KEY_NEW.address, 5, {"from": caller})
    with brownie.reverts(revert_pattern=error):
        oracle.revokeMeter(KEY_A.address, 5, {"from": caller})
    assert state([KEY_A, KEY_NEW], []) == before


def test_the_manager_role_is_read_from_the_registry(oracle, market, admin, manager, alice, carol, error_pattern):
    market.grantRole(market.MANAGER_ROLE(), carol, {"from": admin})
    oracle.registerMeter(KEY_A.address, alice, 0, {"from": carol})
    market.revokeRole(market.MANAGER_ROLE(), manager, {"from": admin})
    with brownie.reverts(revert_pattern=error_pattern("OracleNotManager", manager)):
        oracle.revokeMeter(KEY_A.address, 0, {"from": manager})
    oracle.revokeMeter(KEY_A.address, 0, {"from": carol})


def test_register_rejects_zero_addresses(oracle, manager, alice, state, error_pattern):
    with brownie.reverts(revert_pattern=error_pattern("OracleZeroAddress")):
        oracle.registerMeter(ZERO_ADDRESS, alice, 0, {"from": manager})
    with brownie.reverts(revert_pattern=error_pattern("OracleZeroAddress")):
        oracle.registerMeter(KEY_A.address, ZERO_ADDRESS, 0, {"from": manager})
    with brownie.reverts(revert_pattern=error_pattern("OracleUnknownMeter", ZERO_ADDRESS)):
        oracle.meter(ZERO_ADDRESS)
    assert state([KEY_A], []) == (["unknown"], [])


def test_register_rejects_non_members(oracle, market, manager, dave, outsider, state, plain, error_pattern):
    with brownie.reverts(revert_pattern=error_pattern("OracleNotMember", outsider)):
        oracle.registerMeter(KEY_A.address, outsider, 0, {"from": manager})
    market.removeMember(dave, {"from": manager})
    with brownie.reverts(revert_pattern=error_pattern("OracleNotMember", dave)):
        oracle.registerMeter(KEY_D.address, dave, 0, {"from": manager})
    assert state([KEY_A, KEY_D], []) == (["unknown", "unknown"], [])
    market.addMember(dave, {"from": manager})  # re-activated with its id: may have a key again
    oracle.registerMeter(KEY_D.address, dave, 0, {"from": manager})
    assert plain(oracle.meter(KEY_D.address))[:2] == (dave, 4)


def test_keys_are_never_reused(oracle, manager, alice, bob, state, error_pattern):
    oracle.registerMeter(KEY_A.address, alice, 3, {"from": manager})
    oracle.registerMeter(KEY_B.address, bob, 0, {"from": manager})
    before = state([KEY_A, KEY_B], [])
    exists = error_pattern("OracleMeterExists", KEY_A.address)
    for member, from_slot in ((alice, 3), (alice, 9), (bob, 0)):
        with brownie.reverts(revert_pattern=exists):
            oracle.registerMeter(KEY_A.address, member, from_slot, {"from": manager})
    # rotating onto an existing key (itself included) reverts as a whole: no revocation either
    with brownie.reverts(revert_pattern=exists):
        oracle.rotateMeter(KEY_B.address, KEY_A.address, 5, {"from": manager})
    with brownie.reverts(revert_pattern=error_pattern("OracleMeterExists", KEY_B.address)):
        oracle.rotateMeter(KEY_B.address, KEY_B.address, 5, {"from": manager})
    assert state([KEY_A, KEY_B], []) == before

    oracle.revokeMeter(KEY_A.address, 3, {"from": manager})  # never active
    before = state([KEY_A, KEY_B], [])
    with brownie.reverts(revert_pattern=exists):
        oracle.registerMeter(KEY_A.address, alice, 3, {"from": manager})
    with brownie.reverts(revert_pattern=exists):
        oracle.rotateMeter(KEY_B.address, KEY_A.address, 5, {"from": manager})
    assert state([KEY_A, KEY_B], []) == before


def test_one_key_per_member_and_slot(oracle, manager, alice, bob, state, error_pattern):
    """A new key must start at or after the member's latest key's untilSlot: while that key is
    open, another key reverts whether it would start before the key's first slot, at it or
    after it."""
    oracle.registerMeter(KEY_A.address, alice, 10, {"from": manager})
    before = state([KEY_A, KEY_NEW], [])
    has_meter = error_pattern("OracleMemberHasMeter", alice, KEY_A.address)
    for from_slot in (0, 9, 10, 11, 1_000):
        with brownie.reverts(revert_pattern=has_meter):
            oracle.registerMeter(KEY_NEW.address, alice, from_slot, {"from": manager})
    assert state([KEY_A, KEY_NEW], []) == before
    # the rule is per member: another member's key may cover the same slots
    oracle.registerMeter(KEY_NEW.address, bob, 10, {"from": manager})


def test_a_new_key_starts_at_the_revocation_or_later(oracle, manager, alice, state, logs, plain, error_pattern):
    oracle.registerMeter(KEY_A.address, alice, 10, {"from": manager})
    oracle.revokeMeter(KEY_A.address, 20, {"from": manager})
    # KEY_A signs slots 10 .. 19: a key from slot 19 or before would share a slot with it
    before = state([KEY_A, KEY_NEW], [])
    for from_slot in (0, 15, 19):
        with brownie.reverts(revert_pattern=error_pattern("OracleMemberHasMeter", alice, KEY_A.address)):
            oracle.registerMeter(KEY_NEW.address, alice, from_slot, {"from": manager})
    assert state([KEY_A, KEY_NEW], []) == before

    # moving the revocation earlier makes room: the new key starts exactly where KEY_A stops
    oracle.revokeMeter(KEY_A.address, 15, {"from": manager})
    tx = oracle.registerMeter(KEY_NEW.address, alice, 15, {"from": manager})
    assert logs(tx) == [("MeterRegistered", (KEY_NEW.address, alice, 15))]
    assert plain(oracle.meter(KEY_A.address)) == (alice, 1, 10, 15, False, 0, 0, 0)
    assert plain(oracle.meter(KEY_NEW.address)) == (alice, 1, 15, OPEN, False, 0, 0, 0)

    # KEY_NEW is now the member's key, the one checked; after its revocation a gap is allowed
    with brownie.reverts(revert_pattern=error_pattern("OracleMemberHasMeter", alice, KEY_NEW.address)):
        oracle.registerMeter(KEY_NEWER.address, alice, 30, {"from": manager})
    oracle.revokeMeter(KEY_NEW.address, 25, {"from": manager})
    with brownie.reverts(revert_pattern=error_pattern("OracleMemberHasMeter", alice, KEY_NEW.address)):
        oracle.registerMeter(KEY_NEWER.address, alice, 24, {"from": manager})
    oracle.registerMeter(KEY_NEWER.address, alice, 30, {"from": manager})
    assert plain(oracle.meter(KEY_NEWER.address)) == (alice, 1, 30, OPEN, False, 0, 0, 0)


def test_a_key_revoked_at_its_first_slot_leaves_its_slots_free(oracle, manager, alice, plain, error_pattern):
    """A key revoked before it ever signed still holds the slots before its first one: the next
    key starts at that slot, not before."""
    oracle.registerMeter(KEY_A.address, alice, 10, {"from": manager})
    oracle.revokeMeter(KEY_A.address, 10, {"from": manager})
    with brownie.reverts(revert_pattern=error_pattern("OracleMemberHasMeter", alice, KEY_A.address)):
        oracle.registerMeter(KEY_NEW.address, alice, 9, {"from": manager})
    oracle.registerMeter(KEY_NEW.address, alice, 10, {"from": manager})
    assert plain(oracle.meter(KEY_NEW.address))[2:4] == (10, OPEN)


def test_rotate_meter(oracle, metered, manager, alice, sign, submit, rejected, accepted, logs, plain, state):
    submit(sign(steady(KEY_A, 10)))  # the old key's last reading: slot 10
    tx = oracle.rotateMeter(KEY_A.address, KEY_NEW.address, 20, {"from": manager})
    assert logs(tx) == [("MeterRevoked", (KEY_A.address, 20)), ("MeterRegistered", (KEY_NEW.address, alice, 20))]
    assert plain(oracle.meter(KEY_A.address)) == (alice, 1, 0, 20, True, 10, IMPORT_WH * 11, EXPORT_WH * 11)
    assert plain(oracle.meter(KEY_NEW.address)) == (alice, 1, 20, OPEN, False, 0, 0, 0)

    # the old key signs up to slot 19, the new one from slot 20 on
    before = state([KEY_A, KEY_NEW], [19, 20])
    tx = submit(sign(steady(KEY_A, 20)), sign(steady(KEY_A, 25)), sign(steady(KEY_NEW, 19)))
    assert tx.return_value == 0
    assert rejected(tx) == [
        (KEY_A.address, 20, KEY_NOT_ACTIVE),
        (KEY_A.address, 25, KEY_NOT_ACTIVE),
        (KEY_NEW.address, 19, KEY_NOT_ACTIVE),
    ]
    assert state([KEY_A, KEY_NEW], [19, 20]) == before

    # the new meter's counters start anew: its first reading only needs registers >= interval
    new_first = Reading(KEY_NEW.address, 20, 300, 30, 300, 30)
    tx = submit(sign(steady(KEY_A, 19)), sign(new_first))
    assert tx.return_value == 2
    assert rejected(tx) == []
    assert accepted(tx) == [record(steady(KEY_A, 19)), record(new_first)]
    assert plain(oracle.meter(KEY_A.address))[4:] == (True, 19, IMPORT_WH * 20, EXPORT_WH * 20)
    assert plain(oracle.meter(KEY_NEW.address)) == (alice, 1, 20, OPEN, True, 20, 300, 30)
    # both keys' readings are committed under alice's member id
    assert commitment_of(oracle, 19) == (commitment_link(0, 1, 19, IMPORT_WH, EXPORT_WH), 1)
    assert commitment_of(oracle, 20) == (commitment_link(0, 1, 20, 300, 30), 1)


def test_rotate_rejects(oracle, market, metered, manager, dave, sign, submit, state, error_pattern):
    submit(sign(steady(KEY_A, 10)))
    oracle.registerMeter(KEY_D.address, dave, 0, {"from": manager})
    keys = [KEY_A, KEY_D, KEY_NEW, KEY_STRANGER]
    before = state(keys, [])
    with brownie.reverts(revert_pattern=error_pattern("OracleUnknownMeter", KEY_STRANGER.address)):
        oracle.rotateMeter(KEY_STRANGER.address, KEY_NEW.address, 20, {"from": manager})
    for from_slot in (5, 10):  # not after the last accepted reading
        with brownie.reverts(revert_pattern=error_pattern("OracleInvalidRevocation", KEY_A.address, from_slot)):
            oracle.rotateMeter(KEY_A.address, KEY_NEW.address, from_slot, {"from": manager})
    with brownie.reverts(revert_pattern=error_pattern("OracleZeroAddress")):
        oracle.rotateMeter(KEY_A.address, ZERO_ADDRESS, 20, {"from": manager})
    # the member was removed: its key cannot be replaced, and the old one stays unrevoked
    market.removeMember(dave, {"from": manager})
    with brownie.reverts(revert_pattern=error_pattern("OracleNotMember", dave)):
        oracle.rotateMeter(KEY_D.address, KEY_NEW.address, 20, {"from": manager})
    assert state(keys, []) == before


def test_rotating_a_replaced_key_reverts_as_a_whole(oracle, manager, alice, state, logs, plain, error_pattern):
    """The new key is checked against the member's latest key; the revert undoes the old key's
    revocation too."""
    oracle.registerMeter(KEY_A.address, alice, 0, {"from": manager})
    oracle.rotateMeter(KEY_A.address, KEY_NEW.address, 20, {"from": manager})
    keys = [KEY_A, KEY_NEW, KEY_NEWER]
    before = state(keys, [])
    for from_slot in (15, 20):  # KEY_A's own revocation could move there, but KEY_NEW is open
        with brownie.reverts(revert_pattern=error_pattern("OracleMemberHasMeter", alice, KEY_NEW.address)):
            oracle.rotateMeter(KEY_A.address, KEY_NEWER.address, from_slot, {"from": manager})
    assert state(keys, []) == before
    assert plain(oracle.meter(KEY_A.address))[3] == 20

    # the latest key rotates, from its own first slot too: it then never signs
    tx = oracle.rotateMeter(KEY_NEW.address, KEY_NEWER.address, 20, {"from": manager})
    assert logs(tx) == [("MeterRevoked", (KEY_NEW.address, 20)), ("MeterRegistered", (KEY_NEWER.address, alice, 20))]
    assert plain(oracle.meter(KEY_NEW.address))[2:4] == (20, 20)
    assert plain(oracle.meter(KEY_NEWER.address)) == (alice, 1, 20, OPEN, False, 0, 0, 0)


def test_revoke_meter(oracle, metered, manager, alice, sign, submit, rejected, logs, plain, state):
    submit(sign(steady(KEY_A, 10)))
    tx = oracle.revokeMeter(KEY_A.address, 30, {"from": manager})
    assert logs(tx) == [("MeterRevoked", (KEY_A.address, 30))]
    assert plain(oracle.meter(KEY_A.address)) == (alice, 1, 0, 30, True, 10, IMPORT_WH * 11, EXPORT_WH * 11)

    # revoking again: at the same slot or earlier (down to the slot after the last reading)
    tx = oracle.revokeMeter(KEY_A.address, 30, {"from": manager})
    assert logs(tx) == [("MeterRevoked", (KEY_A.address, 30))]
    tx = oracle.revokeMeter(KEY_A.address, 11, {"from": manager})
    assert logs(tx) == [("MeterRevoked", (KEY_A.address, 11))]
    assert plain(oracle.meter(KEY_A.address))[3] == 11

    before = state([KEY_A], [11, 12])
    tx = submit(sign(steady(KEY_A, 11)), sign(steady(KEY_A, 12)))
    assert tx.return_value == 0
    assert rejected(tx) == [(KEY_A.address, 11, KEY_NOT_ACTIVE), (KEY_A.address, 12, KEY_NOT_ACTIVE)]
    assert state([KEY_A], [11, 12]) == before
    # a key may be revoked at its first slot: it never signs
    tx = oracle.revokeMeter(KEY_B.address, 0, {"from": manager})
    assert logs(tx) == [("MeterRevoked", (KEY_B.address, 0))]
    assert rejected(submit(sign(steady(KEY_B, 0)))) == [(KEY_B.address, 0, KEY_NOT_ACTIVE)]


def test_invalid_revocations(oracle, metered, manager, dave, sign, submit, state, error_pattern):
    submit(sign(steady(KEY_A, 10)))
    oracle.registerMeter(KEY_D.address, dave, 5, {"from": manager})
    oracle.revokeMeter(KEY_D.address, 20, {"from": manager})
    keys = [KEY_A, KEY_D, KEY_STRANGER]
    before = state(keys, [])
    cases = [
        (KEY_D, 4),  # before the key's first slot
        (KEY_D, 0),
        (KEY_D, 21),  # after its current revocation
        (KEY_D, MAX32),
        (KEY_A, 10),  # not after its last accepted reading
        (KEY_A, 3),
    ]
    for key, from_slot in cases:
        error = error_pattern("OracleInvalidRevocation", key.address, from_slot)
        with brownie.reverts(revert_pattern=error):
            oracle.revokeMeter(key.address, from_slot, {"from": manager})
    with brownie.reverts(revert_pattern=error_pattern("OracleUnknownMeter", KEY_STRANGER.address)):
        oracle.revokeMeter(KEY_STRANGER.address, 20, {"from": manager})
    assert state(keys, []) == before
    # the bounds themselves are valid
    oracle.revokeMeter(KEY_D.address, 20, {"from": manager})
    oracle.revokeMeter(KEY_D.address, 5, {"from": manager})
    oracle.revokeMeter(KEY_A.address, 11, {"from": manager})


# ----------------------------------------------------------------- rejection reasons


def test_unknown_meter(oracle, metered, sign, submit, rejected, accepted, state):
    before = state([KEY_STRANGER], [5])
    tx = submit(sign(steady(KEY_STRANGER, 5)))
    assert tx.return_value == 0
    assert rejected(tx) == [(KEY_STRANGER.address, 5, UNKNOWN_METER)]
    assert accepted(tx) == []
    assert state([KEY_STRANGER], [5]) == before


def test_key_not_active(oracle, metered, manager, dave, sign, submit, rejected, accepted, state):
    oracle.registerMeter(KEY_D.address, dave, 10, {"from": manager})
    oracle.revokeMeter(KEY_D.address, 20, {"from": manager})
    before = state([KEY_D], [9, 20, 21])
    tx = submit(*(sign(steady(KEY_D, slot)) for slot in (9, 20, 21)))
    assert tx.return_value == 0
    assert rejected(tx) == [(KEY_D.address, slot, KEY_NOT_ACTIVE) for slot in (9, 20, 21)]
    assert state([KEY_D], [9, 20, 21]) == before
    # its first and last slots are active
    tx = submit(sign(steady(KEY_D, 10)), sign(steady(KEY_D, 19)))
    assert tx.return_value == 2
    assert accepted(tx) == [record(steady(KEY_D, 10)), record(steady(KEY_D, 19))]


def test_slot_not_ended(oracle, market, metered, clock, sign, submit, rejected, accepted, state):
    current = market.currentSlot()
    slots = [current, current + 1, current + 1_000]
    before = state([KEY_A], slots)
    tx = submit(*(sign(steady(KEY_A, slot)) for slot in slots))
    assert tx.return_value == 0
    assert rejected(tx) == [(KEY_A.address, slot, SLOT_NOT_ENDED) for slot in slots]
    assert state([KEY_A], slots) == before

    # exactly at the end of the slot (the start of the next one), and not a second before
    epoch, slot_seconds, _ = market.slotClock()
    end = epoch + (current + 1) * slot_seconds
    clock.next_tx_at(end - 1)
    assert rejected(submit(sign(steady(KEY_A, current)))) == [(KEY_A.address, current, SLOT_NOT_ENDED)]
    clock.next_tx_at(end)
    tx = submit(sign(steady(KEY_A, current)))
    assert tx.return_value == 1
    assert accepted(tx) == [record(steady(KEY_A, current))]


def test_no_slot_ends_before_the_epoch(MeterOracle, market_at, config, admin, alice, clock, logs):
    """The oracle keeps its own registry's clock: with an epoch in the future, slot 0 (in the
    future) has not ended, and it ends exactly one slot length after the epoch."""
    epoch = config.epoch_for(clock.now) + 10 * config.slot_seconds
    market = market_at(epoch)
    market.grantRole(market.MANAGER_ROLE(), admin, {"from": admin})
    market.addMember(alice, {"from": admin})
    oracle = MeterOracle.deploy(market, {"from": admin})
    oracle.registerMeter(KEY_A.address, alice, 0, {"from": admin})
    signed = OracleDomain(clock.chain.id, oracle.address).sign(steady(KEY_A, 0), KEY_A.key)
    for timestamp in (clock.now + 1, epoch - 1, epoch, epoch + config.slot_seconds - 1):
        clock.next_tx_at(timestamp)
        tx = oracle.submitReadings(signed.packed(), {"from": alice})
        assert logs(tx) == [("ReadingRejected", (KEY_A.address, 0, SLOT_NOT_ENDED))]
    clock.next_tx_at(epoch + config.slot_seconds)
    tx = oracle.submitReadings(signed.packed(), {"from": alice})
    assert tx.return_value == 1
    assert [name for name, _ in logs(tx)] == ["ReadingsAccepted"]


def flip_byte(data, index):
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


BAD_SIGNATURES = {
    "another_key": lambda signed, domain, other: domain.sign(signed.reading, KEY_B.key).packed(),
    "flipped_byte_in_r": lambda signed, domain, other: flip_byte(signed.packed(), 44 + 17),
    "flipped_byte_in_s": lambda signed, domain, other: flip_byte(signed.packed(), 76 + 31),
    "flipped_v": lambda signed, domain, other: replace(signed, v=55 - signed.v).packed(),
    "v_without_27": lambda signed, domain, other: replace(signed, v=signed.v - 27).packed(),
    "zero_signature": lambda signed, domain, other: signed.packed()[:44] + bytes(65),
    "malleable": lambda signed, domain, other: malleated(signed).packed(),
    "wrong_chain_id": lambda signed, domain, other: (
        OracleDomain(domain.chain_id + 1, domain.verifying_contract).sign(signed.reading, KEY_A.key).packed()
    ),
    "wrong_contract": lambda signed, domain, other: (
        OracleDomain(domain.chain_id, other).sign(signed.reading, KEY_A.key).packed()
    ),
    "reading_changed_after_signing": lambda signed, domain, other: replace(
        signed, reading=steady(KEY_A, 5, IMPORT_WH + 1)
    ).packed(),
}


@pytest.mark.parametrize("forgery", BAD_SIGNATURES)
def test_bad_signature(oracle, market, metered, domain, sign, submit, rejected, accepted, state, forgery):
    genuine = sign(steady(KEY_A, 5))
    batch = BAD_SIGNATURES[forgery](genuine, domain, market.address)
    assert batch != genuine.packed() and len(batch) == 109
    before = state([KEY_A], [5])
    tx = submit(batch)
    assert tx.return_value == 0
    assert rejected(tx) == [(KEY_A.address, 5, BAD_SIGNATURE)]
    assert accepted(tx) == []
    assert state([KEY_A], [5]) == before
    # nothing of the forgery stuck: the genuine reading is accepted after it
    tx = submit(genuine)
    assert tx.return_value == 1
    assert accepted(tx) == [record(genuine.reading)]


def test_malleable_signature_is_rejected_though_ecrecover_accepts_it(
    oracle, metered, domain, web3, sign, submit, rejected, accepted, state
):
    genuine = sign(steady(KEY_A, 5))
    digest = domain.digest(genuine.reading)
    twin = malleated(genuine)
    assert twin.s > SECP256K1_N // 2 >= genuine.s
    # the chain's ecrecover precompile gives the meter key for both signatures
    for signature in (genuine, twin):
        data = (
            digest + signature.v.to_bytes(32, "big") + signature.r.to_bytes(32, "big") + signature.s.to_bytes(32, "big")
        )
        result = bytes(web3.eth.call({"to": "0x" + "00" * 19 + "01", "data": "0x" + data.hex()}))
        assert (
            to_checksum_address(result[12:]) == KEY_A.address == recover(digest, signature.v, signature.r, signature.s)
        )

    before = state([KEY_A], [5])
    tx = submit(twin)
    assert rejected(tx) == [(KEY_A.address, 5, BAD_SIGNATURE)]
    assert tx.return_value == 0
    assert state([KEY_A], [5]) == before
    assert submit(genuine).return_value == 1


def test_out_of_order(oracle, metered, sign, submit, rejected, accepted, state):
    submit(sign(steady(KEY_A, 10)))
    before = state([KEY_A], [3, 9])
    # validly signed, registers consistent with the slot, but before the last accepted one
    tx = submit(sign(steady(KEY_A, 9)), sign(steady(KEY_A, 3)))
    assert tx.return_value == 0
    assert rejected(tx) == [(KEY_A.address, 9, OUT_OF_ORDER), (KEY_A.address, 3, OUT_OF_ORDER)]
    assert state([KEY_A], [3, 9]) == before
    # within one batch too: the later slot first, then the earlier one
    tx = submit(sign(steady(KEY_A, 12)), sign(steady(KEY_A, 11)))
    assert tx.return_value == 1
    assert accepted(tx) == [record(steady(KEY_A, 12))]
    assert rejected(tx) == [(KEY_A.address, 11, OUT_OF_ORDER)]


@pytest.mark.parametrize(
    "import_register, export_register",
    [
        (IMPORT_WH * 11 - 1, EXPORT_WH * 12),  # import register below the last one
        (IMPORT_WH * 12, EXPORT_WH * 11 - 1),  # export register below
        (0, 0),
    ],
)
@pytest.mark.parametrize("next_slot", [11, 15])  # consecutive, or after a gap
def test_registers_backwards(
    oracle, metered, sign, submit, rejected, state, next_slot, import_register, export_register
):
    submit(sign(steady(KEY_A, 10)))  # registers 2750 / 275
    reading = with_registers(Reading(KEY_A.address, next_slot, 0, 0, 0, 0), import_register, export_register)
    before = state([KEY_A], [next_slot])
    tx = submit(sign(reading))
    assert tx.return_value == 0
    assert rejected(tx) == [(KEY_A.address, next_slot, REGISTERS_BACKWARDS)]
    assert state([KEY_A], [next_slot]) == before


# (slot, importWh, exportWh, importRegisterWh, exportRegisterWh) after steady(KEY_A, 10):
# registers 2750 / 275
REGISTER_MISMATCHES = {
    "consecutive_import_short": (11, 250, 25, 2999, 300),
    "consecutive_import_over": (11, 250, 25, 3001, 300),
    "consecutive_export_short": (11, 250, 25, 3000, 299),
    "consecutive_export_over": (11, 250, 25, 3000, 301),
    "consecutive_registers_unchanged": (11, 250, 25, 2750, 275),
    "gap_import_grew_less": (13, 250, 25, 2999, 300),
    "gap_export_grew_less": (13, 250, 25, 3000, 299),
}


@pytest.mark.parametrize("case", REGISTER_MISMATCHES)
def test_registers_mismatch(oracle, metered, sign, submit, rejected, state, case):
    submit(sign(steady(KEY_A, 10)))
    reading = Reading(KEY_A.address, *REGISTER_MISMATCHES[case])
    before = state([KEY_A], [reading.slot])
    tx = submit(sign(reading))
    assert tx.return_value == 0
    assert rejected(tx) == [(KEY_A.address, reading.slot, REGISTERS_MISMATCH)]
    assert state([KEY_A], [reading.slot]) == before


def test_the_slot_after_slot_0_is_exact(oracle, metered, sign, submit, rejected, accepted, state):
    """Slot 0 is a first reading like any other, and slot 1 then follows it exactly."""
    submit(sign(Reading(KEY_A.address, 0, 250, 25, 1_000, 100)))  # registers above the interval
    before = state([KEY_A], [1])
    tx = submit(sign(Reading(KEY_A.address, 1, 250, 25, 1_251, 125)))  # import grew by 251
    assert rejected(tx) == [(KEY_A.address, 1, REGISTERS_MISMATCH)]
    assert state([KEY_A], [1]) == before
    tx = submit(sign(Reading(KEY_A.address, 1, 250, 25, 1_250, 125)))
    assert accepted(tx) == [(KEY_A.address, 1, 250, 25, 1_250, 125)]


@pytest.mark.parametrize(
    "reading",
    [
        Reading(KEY_A.address, 10, 250, 25, 249, 25),  # import register below its own interval
        Reading(KEY_A.address, 10, 250, 25, 250, 24),  # export register below
        Reading(KEY_A.address, 0, 1, 0, 0, 0),  # slot 0: the same rule
    ],
)
def test_first_reading_registers_below_its_interval(oracle, metered, sign, submit, rejected, state, reading):
    before = state([KEY_A], [reading.slot])
    tx = submit(sign(reading))
    assert tx.return_value == 0
    assert rejected(tx) == [(KEY_A.address, reading.slot, REGISTERS_MISMATCH)]
    assert state([KEY_A], [reading.slot]) == before


def test_registers_that_fit(oracle, metered, alice, sign, submit, accepted, rejected, plain):
    """A first reading counts at least its interval (slot 0 included); after a gap registers grow
    by at least the interval; in the next slot by exactly it."""
    readings = [
        Reading(KEY_A.address, 0, 250, 25, 250, 25),  # first, exactly its interval, at slot 0
        Reading(KEY_A.address, 1, 250, 25, 500, 50),  # consecutive: exact
        Reading(KEY_A.address, 5, 250, 25, 1_500, 75),  # gap: import grew by more, export by exactly 25
        Reading(KEY_A.address, 6, 0, 0, 1_500, 75),  # consecutive, nothing flowed
        Reading(KEY_A.address, 8, 0, 0, 1_500, 75),  # gap, nothing flowed and nothing grew
        Reading(KEY_B.address, 7, 100, 10, 5_000_000, 700),  # first: registers far above
    ]
    tx = submit(*(sign(reading) for reading in readings))
    assert rejected(tx) == []
    assert tx.return_value == len(readings)
    assert accepted(tx) == [record(reading) for reading in readings]
    assert plain(oracle.meter(KEY_A.address)) == (alice, 1, 0, OPEN, True, 8, 1_500, 75)
    assert plain(oracle.meter(KEY_B.address))[4:] == (True, 7, 5_000_000, 700)


# ------------------------------------------------------ re-sent and conflicting readings


def test_resending_the_last_reading_is_a_no_op(oracle, metered, sign, submit, accepted, logs, state):
    submit(sign(steady(KEY_A, 9)))
    last = sign(steady(KEY_A, 10))
    submit(last)
    before = state([KEY_A], [9, 10])
    tx = submit(last)
    assert tx.return_value == 0
    assert logs(tx) == []
    # recognised by its digest alone: any signature bytes (the malleable twin too) are a no-op
    tx = submit(last, malleated(last), last.packed()[:44] + bytes(65))
    assert tx.return_value == 0
    assert logs(tx) == []
    assert state([KEY_A], [9, 10]) == before
    # an earlier accepted reading is no longer the last one: out of order
    tx = submit(sign(steady(KEY_A, 9)))
    assert logs(tx) == [("ReadingRejected", (KEY_A.address, 9, OUT_OF_ORDER))]
    # and in one batch, the second copy of a reading accepted by the first is a no-op
    tx = submit(sign(steady(KEY_A, 11)), sign(steady(KEY_A, 11)))
    assert tx.return_value == 1
    assert accepted(tx) == [record(steady(KEY_A, 11))]
    assert [name for name, _ in logs(tx)] == ["ReadingsAccepted"]


def test_conflicting_reading(oracle, metered, sign, submit, logs, plain, state):
    first = steady(KEY_A, 10)
    submit(sign(first))
    before = state([KEY_A], [10, 11])
    others = [
        replace(first, import_wh=first.import_wh + 1),
        with_registers(first, first.import_register_wh + 7, first.export_register_wh),  # registers only
        Reading(KEY_A.address, 10, 0, 0, 0, 0),  # registers nonsensical: a conflict all the same
        Reading(KEY_A.address, 10, MAX32, MAX32, MAX48, MAX48),
    ]
    tx = submit(*(sign(reading) for reading in others))
    assert tx.return_value == 0
    assert logs(tx) == [("ReadingConflict", reading.as_tuple()) for reading in others]
    assert state([KEY_A], [10, 11]) == before
    assert plain(oracle.meter(KEY_A.address))[5:] == (10, first.import_register_wh, first.export_register_wh)
    # the first one stands: the next slot must continue its registers
    tx = submit(sign(steady(KEY_A, 11)))
    assert tx.return_value == 1


def test_conflict_needs_the_meter_signature(oracle, metered, sign, submit, logs, state):
    first = steady(KEY_A, 10)
    submit(sign(first))
    before = state([KEY_A], [10])
    other = replace(first, import_wh=first.import_wh + 1)
    tx = submit(sign(other, key=KEY_B), malleated(sign(other)))
    assert tx.return_value == 0
    assert logs(tx) == [("ReadingRejected", (KEY_A.address, 10, BAD_SIGNATURE))] * 2
    assert state([KEY_A], [10]) == before


def test_mixed_batch(oracle, market, metered, sign, submit, logs, accepted, state, plain):
    """Good and bad readings interleaved: exactly the good ones are accepted, in batch order."""
    submit(sign(steady(KEY_C, 5)))
    current = market.currentSlot()
    good = [sign(steady(KEY_A, 5)), sign(steady(KEY_C, 6)), sign(steady(KEY_A, 6)), sign(steady(KEY_B, 9))]
    bad = [
        (sign(steady(KEY_B, 5), key=KEY_A), (KEY_B.address, 5, BAD_SIGNATURE)),
        (sign(steady(KEY_STRANGER, 5)), (KEY_STRANGER.address, 5, UNKNOWN_METER)),
        (sign(steady(KEY_C, 4)), (KEY_C.address, 4, OUT_OF_ORDER)),
        (sign(steady(KEY_A, current)), (KEY_A.address, current, SLOT_NOT_ENDED)),
        (sign(with_registers(steady(KEY_C, 7), 1, 1)), (KEY_C.address, 7, REGISTERS_BACKWARDS)),
        (sign(with_registers(steady(KEY_A, 7), 2_001, 175)), (KEY_A.address, 7, REGISTERS_MISMATCH)),
    ]
    batch = [bad[0][0], good[0], bad[1][0], good[1], bad[2][0], bad[3][0], good[2], bad[4][0], bad[5][0], good[3]]
    before = state([KEY_STRANGER], [4, 7, current])
    tx = submit(*batch)
    assert tx.return_value == len(good)
    assert [bytes(data) for (data,) in logs(tx, "ReadingsAccepted")] == [b"".join(item.packed()[:44] for item in good)]
    assert accepted(tx) == [record(item.reading) for item in good]
    assert logs(tx, "ReadingRejected") == [expected for _, expected in bad]
    assert [name for name, _ in logs(tx)] == ["ReadingRejected"] * len(bad) + ["ReadingsAccepted"]
    # the rejected readings changed nothing, the accepted ones are recorded
    assert state([KEY_STRANGER], [4, 7, current]) == before
    assert plain(oracle.meter(KEY_A.address))[4:] == (True, 6, IMPORT_WH * 7, EXPORT_WH * 7)
    assert plain(oracle.meter(KEY_B.address))[4:] == (True, 9, IMPORT_WH * 10, EXPORT_WH * 10)
    assert plain(oracle.meter(KEY_C.address))[4:] == (True, 6, IMPORT_WH * 7, EXPORT_WH * 7)
    assert [commitment_of(oracle, slot)[1] for slot in (4, 5, 6, 7, 9)] == [0, 2, 2, 0, 1]


# ---------------------------------------------------------------------- commitments


def test_slot_commitments_replay_the_accepted_readings(oracle, metered, manager, dave, sign, submit, accepted):
    """Four batches for slots 10 and 11, with rejected, re-sent and conflicting readings among
    them: each slot's chain is the fold of its accepted readings in event order."""
    oracle.registerMeter(KEY_D.address, dave, 0, {"from": manager})
    member_ids = {key.address: oracle.meter(key.address)[1] for key in (KEY_A, KEY_B, KEY_C, KEY_D)}
    assert sorted(member_ids.values()) == [1, 2, 3, 4]
    batches = [
        [sign(steady(KEY_C, 10, 400, 0)), sign(steady(KEY_A, 10)), sign(steady(KEY_STRANGER, 10))],
        [sign(steady(KEY_A, 10)), sign(steady(KEY_A, 10, 251)), sign(steady(KEY_B, 10, 0, 900))],
        [sign(steady(KEY_A, 11)), sign(steady(KEY_D, 10, 1, 2), key=KEY_A), sign(steady(KEY_C, 11, 400, 0))],
        [sign(steady(KEY_D, 10, 1, 2)), sign(steady(KEY_D, 11, 1, 2)), sign(steady(KEY_B, 11, 0, 900))],
    ]
    records = []
    for batch in batches:
        tx = submit(*batch)
        assert tx.return_value == len(accepted(tx))
        records += accepted(tx)
    # acceptance order, not meter or member order
    assert [(meter, slot) for meter, slot, *_ in records] == [
        (KEY_C.address, 10),
        (KEY_A.address, 10),
        (KEY_B.address, 10),
        (KEY_A.address, 11),
        (KEY_C.address, 11),
        (KEY_D.address, 10),
        (KEY_D.address, 11),
        (KEY_B.address, 11),
    ]
    for slot in (10, 11):
        chain = 0
        replayed = [rec for rec in records if rec[1] == slot]
        for meter, _, import_wh, export_wh, _, _ in replayed:
            chain = commitment_link(chain, member_ids[meter], slot, import_wh, export_wh)
        assert commitment_of(oracle, slot) == (chain, 4)
        assert chain != 0 and chain < 2**224
    assert commitment_of(oracle, 9) == commitment_of(oracle, 12) == (0, 0)


# -------------------------------------------------------------------------- sealing


def test_set_sealer(oracle, admin, outsider, accounts, logs, error_pattern):
    assert oracle.sealer() == ZERO_ADDRESS
    tx = oracle.setSealer(accounts[8], {"from": admin})
    assert logs(tx) == [("SealerSet", (accounts[8],))]
    assert oracle.sealer() == accounts[8]
    # once only, the same account included
    for other in (outsider, accounts[8]):
        with brownie.reverts(revert_pattern=error_pattern("OracleSealerSet", accounts[8])):
            oracle.setSealer(other, {"from": admin})
    assert oracle.sealer() == accounts[8]


@pytest.mark.parametrize("caller", ["manager", "alice", "outsider"])
def test_only_the_admin_sets_the_sealer(oracle, admin, caller, accounts, request, error_pattern):
    caller = request.getfixturevalue(caller)
    for account in (accounts[8], caller, ZERO_ADDRESS):
        with brownie.reverts(revert_pattern=error_pattern("OracleNotAdmin", caller)):
            oracle.setSealer(account, {"from": caller})
    with brownie.reverts(revert_pattern=error_pattern("OracleZeroAddress")):
        oracle.setSealer(ZERO_ADDRESS, {"from": admin})
    assert oracle.sealer() == ZERO_ADDRESS


def test_the_admin_role_is_read_from_the_registry(oracle, market, admin, carol, accounts, error_pattern):
    market.grantRole(market.DEFAULT_ADMIN_ROLE(), carol, {"from": admin})
    market.renounceRole(market.DEFAULT_ADMIN_ROLE(), admin, {"from": admin})
    with brownie.reverts(revert_pattern=error_pattern("OracleNotAdmin", admin)):
        oracle.setSealer(accounts[8], {"from": admin})
    oracle.setSealer(accounts[8], {"from": carol})
    assert oracle.sealer() == accounts[8]


def test_only_the_sealer_seals(
    oracle, metered, admin, manager, alice, outsider, accounts, sign, submit, state, error_pattern
):
    submit(sign(steady(KEY_A, 10)))
    before = state([], [10, 11])
    # before a sealer is set, nobody may seal (the zero address is no caller)
    for caller in (admin, accounts[8]):
        with brownie.reverts(revert_pattern=error_pattern("OracleNotSealer", caller)):
            oracle.sealSlot(10, {"from": caller})
    oracle.setSealer(accounts[8], {"from": admin})
    for caller in (admin, manager, alice, outsider):
        with brownie.reverts(revert_pattern=error_pattern("OracleNotSealer", caller)):
            oracle.sealSlot(10, {"from": caller})
    assert state([], [10, 11]) == before
    assert not oracle.isSealed(10)
    # the slot is still open
    assert submit(sign(steady(KEY_B, 10))).return_value == 1


def test_seal_slot(oracle, metered, sealer, sign, submit, logs, plain):
    submit(sign(steady(KEY_A, 10)), sign(steady(KEY_B, 10, 0, 900)))
    chain = commitment_link(commitment_link(0, 1, 10, IMPORT_WH, EXPORT_WH), 2, 10, 0, 900)
    assert commitment_of(oracle, 10) == (chain, 2)
    assert not oracle.isSealed(10)

    tx = oracle.sealSlot(10, {"from": sealer})
    assert sealed_commitment(tx.return_value) == (chain, 2)
    assert [name for name, _ in logs(tx)] == ["SlotSealed"]
    ((slot, *sealed),) = logs(tx, "SlotSealed")
    assert (slot, sealed_commitment(sealed)) == (10, (chain, 2))
    assert [oracle.isSealed(slot) for slot in (9, 10, 11)] == [False, True, False]
    # the seal flag is not part of the count
    assert commitment_of(oracle, 10) == (chain, 2)

    # sealing again returns the same commitment, with no event
    tx = oracle.sealSlot(10, {"from": sealer})
    assert sealed_commitment(tx.return_value) == (chain, 2)
    assert logs(tx) == []
    assert oracle.isSealed(10)
    assert commitment_of(oracle, 10) == (chain, 2)

    # a slot without readings seals with an empty commitment
    tx = oracle.sealSlot(12, {"from": sealer})
    assert sealed_commitment(tx.return_value) == (0, 0)
    ((slot, *sealed),) = logs(tx, "SlotSealed")
    assert (slot, sealed_commitment(sealed)) == (12, (0, 0))
    assert oracle.isSealed(12) and commitment_of(oracle, 12) == (0, 0)


def test_readings_for_a_sealed_slot_are_rejected(oracle, metered, sealer, sign, submit, logs, accepted, state, plain):
    """After sealing, a new reading for the slot is rejected with SlotSealed, while a re-sent one
    stays a silent no-op, a conflicting one is still reported (evidence for auditors) and a
    forged one is still a bad signature; the batch's other slots are accepted."""
    first = steady(KEY_A, 10)
    submit(sign(first))
    oracle.sealSlot(10, {"from": sealer})
    before = state([KEY_A, KEY_B, KEY_C, KEY_STRANGER], [10])
    conflicting = steady(KEY_A, 10, 251)
    batch = [
        (sign(steady(KEY_B, 10)), ("ReadingRejected", (KEY_B.address, 10, SLOT_SEALED))),  # valid, too late
        (sign(first), None),  # re-sent: a silent no-op
        (sign(conflicting), ("ReadingConflict", (KEY_A.address, 10, 251, EXPORT_WH, *conflicting.as_tuple()[4:]))),
        (sign(steady(KEY_C, 10), key=KEY_A), ("ReadingRejected", (KEY_C.address, 10, BAD_SIGNATURE))),  # forged
        (sign(steady(KEY_STRANGER, 10)), ("ReadingRejected", (KEY_STRANGER.address, 10, UNKNOWN_METER))),
    ]
    good = [sign(steady(KEY_A, 11)), sign(steady(KEY_B, 11)), sign(steady(KEY_C, 9))]
    tx = submit(*(signed for signed, _ in batch), *good)
    assert tx.return_value == len(good)
    events = [event for _, event in batch if event is not None]
    assert logs(tx)[:-1] == events
    assert accepted(tx) == [record(signed.reading) for signed in good]
    # the sealed slot's commitment is final; the other slots took their readings
    assert state([KEY_STRANGER], [10]) == (before[0][3:], before[1])
    assert oracle.isSealed(10)
    assert plain(oracle.meter(KEY_A.address))[4:] == (True, 11, IMPORT_WH * 12, EXPORT_WH * 12)
    assert plain(oracle.meter(KEY_B.address))[4:] == (True, 11, IMPORT_WH * 12, EXPORT_WH * 12)
    assert plain(oracle.meter(KEY_C.address))[4:] == (True, 9, IMPORT_WH * 10, EXPORT_WH * 10)
    assert [commitment_of(oracle, slot)[1] for slot in (9, 11)] == [1, 2]


# ------------------------------------------------------------------ malformed batches


@pytest.mark.parametrize("length", [1, 44, 108, 110, 109 * 2 + 1, 109 * 3 - 1])
def test_malformed_batch(oracle, metered, sign, submit, state, error_pattern, length):
    """A length that is not a multiple of 109 reverts as a whole, its valid readings included."""
    batch = pack(sign(steady(KEY_A, slot)) for slot in (5, 6, 7))[:length]
    before = state([KEY_A], [5, 6, 7])
    with brownie.reverts(revert_pattern=error_pattern("OracleMalformedBatch", length)):
        submit(batch)
    assert state([KEY_A], [5, 6, 7]) == before


def test_empty_batch(oracle, metered, submit, logs):
    tx = submit()
    assert tx.return_value == 0
    assert logs(tx) == []

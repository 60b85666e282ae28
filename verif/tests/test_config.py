"""The configuration object, its presets and the shared error codes."""

import json

import pytest

from openmaia.config import PRESETS, Config, get_config
from openmaia.errors import ERROR_CODE_BITS, ErrorCode
from openmaia.numerics.formats import Format


def test_presets_exist_and_are_consistent():
    assert set(PRESETS) >= {"small", "default", "ice40", "ulx3s"}
    for name, config in PRESETS.items():
        assert config.name == name
        assert get_config(name) is config
        assert config.fp4_macs_per_cycle == 2 * config.fp8_macs_per_cycle
        assert config.tsram_bytes == (config.tsram_banks * config.tsram_bank_bytes
                                      * config.tsram_bank_depth)
        json.dumps(config.summary())


def test_fpga_presets_build_the_subset_formats():
    for name in ("ice40", "ulx3s"):
        assert get_config(name).formats == {Format.E4M3, Format.E2M1}
    assert get_config("ice40").fp8_macs_per_cycle >= 4
    assert get_config("ulx3s").fp8_macs_per_cycle >= 256


def test_rates_follow_the_wider_side():
    config = get_config("small")
    assert config.macs_per_cycle("e2m1", "e2m1") == 2 * config.lanes * config.engines
    assert config.macs_per_cycle("e4m3", "e2m1") == config.lanes * config.engines
    assert config.macs_per_cycle(Format.E3M2, Format.INT8) == config.lanes * config.engines
    with pytest.raises(ValueError, match="not built into"):
        get_config("ice40").macs_per_cycle("e5m2", "e4m3")


@pytest.mark.parametrize("change, message", [
    ({"lanes": 3}, "lanes must be"),
    ({"lanes": 32}, "lanes must be"),
    ({"array_rows": 0}, "array_rows must be a positive integer"),
    ({"tsram_banks": 6}, "tsram_banks must be a power of two"),
    ({"tsram_bank_bytes": 2}, "tsram_bank_bytes must be"),
    ({"hbm_preset": "DDR4"}, "hbm_preset must be one of"),
    ({"axi_data_bits": 100}, "axi_data_bits must be"),
    ({"formats": frozenset()}, "at least one element format"),
    ({"formats": {"e9m9"}}, "unknown element format"),
    ({"clock_mhz": 0}, "clock_mhz must be positive"),
])
def test_bad_parameters_are_rejected_with_a_clear_error(change, message):
    with pytest.raises(ValueError, match=message):
        get_config("small").replace(**change)


def test_replace_coerces_format_names():
    config = get_config("small").replace(formats={"E4M3", "e2m1"})
    assert config.formats == {Format.E4M3, Format.E2M1}
    assert config.format_names == ("e4m3", "e2m1")
    assert isinstance(config, Config)


def test_unknown_preset():
    with pytest.raises(ValueError, match="presets: small"):
        get_config("huge")


def test_error_codes_are_unique_fit_their_field_and_are_described():
    values = [int(code) for code in ErrorCode]
    assert len(values) == len(set(values))
    assert ErrorCode.OK == 0
    assert all(0 <= v < 1 << ERROR_CODE_BITS for v in values)
    assert all(code.description for code in ErrorCode)
    assert ErrorCode(0x12) is ErrorCode.DESC_OUT_OF_WINDOW


def test_counter_bits_and_vector_unit_fields():
    """counter_bits: None or 8..48, and the tile's mask keeps the low bits of every counter of a
    group (structs, arrays); tvp_lanes=0 is a tile without the vector unit."""
    from openmaia.tile.tcp import COUNTERS, TcpCounters
    from openmaia.tile.tile import _counter_mask
    from openmaia.tile.tsram import TILE_PORT_NAMES, tile_ports
    small = get_config("small")
    for bad in (7, 49, True, 16.0):
        with pytest.raises(ValueError, match="counter_bits"):
            small.replace(counter_bits=bad)
    assert small.counter_bits is None and small.replace(counter_bits=16).counter_bits == 16
    for bad in (0, 3, 128):
        with pytest.raises(ValueError, match="command_fetch_depth"):
            small.replace(command_fetch_depth=bad)
    mask = _counter_mask(TcpCounters, 8)
    assert mask == sum(0xFF << 32 * i for i in range(len(COUNTERS)))
    assert _counter_mask(TcpCounters, 48) == (1 << 32 * len(COUNTERS)) - 1
    ice = get_config("ice40")
    assert not ice.vector_unit and small.vector_unit and ice.tvp_port_words == 0
    assert tuple(tile_ports(ice)) == TILE_PORT_NAMES[:4]
    assert tuple(tile_ports(small)) == TILE_PORT_NAMES
    for bad in (3, -1, 64):
        with pytest.raises(ValueError, match="tvp_lanes"):
            small.replace(tvp_lanes=bad)

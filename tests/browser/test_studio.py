"""The studio page in a real browser: what a musician does, click by click, against the real API and the tiny
trained runs of tests/conftest.py (a REMI run and a multitrack MMM run)."""

from __future__ import annotations

import httpx
import pytest
import symusic
from miditok.utils import get_bars_ticks

from tests.browser.conftest import TOKEN
from tests.conftest import make_midi

pytestmark = pytest.mark.browser

WAIT = 60  # seconds a generation of a tiny model may take on a busy 2-core machine

# Pixels of a canvas in a track colour: the roll's background, grid, bar lines and labels are all grey
COLOURED_PIXELS = """
const canvas = arguments[0];
const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
let n = 0;
for (let i = 0; i < data.length; i += 4) {
  const r = data[i], g = data[i + 1], b = data[i + 2];
  if (Math.max(r, g, b) - Math.min(r, g, b) > 60) n++;
}
return n;
"""


def wait(driver, condition, timeout=WAIT, message=""):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition, message)


def by_id(driver, name):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, name)


def css(driver, selector):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def open_studio(driver, url):
    driver.get(url)
    wait(driver, lambda d: d.execute_script("return document.body.dataset.ready"), 30, "the page did not start")
    return driver


def models(server, token=None) -> list[dict]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(f"{server.url}/api/models", headers=headers, timeout=30).json()["models"]


def model_id(server, multitrack: bool) -> str:
    return next(m["id"] for m in models(server) if bool(m["multitrack"]) == multitrack)


def choose(driver, select_id, value):
    from selenium.webdriver.support.ui import Select

    Select(by_id(driver, select_id)).select_by_value(value)


def set_field(driver, field_id, value):
    field = by_id(driver, field_id)
    field.clear()
    field.send_keys(str(value))


def small_settings(driver, max_tokens=64, num=1, seed=1):
    set_field(driver, "set-max_tokens", max_tokens)
    set_field(driver, "set-num", num)
    set_field(driver, "set-seed", seed)


def generate(driver, takes_before=0, num=1, button=None):
    """Press Generate (or another button that starts a job) and wait until the job's take cards are in the page
    with their rolls drawn."""
    (button or by_id(driver, "generate")).click()
    wait(
        driver,
        lambda d: len(css(d, ".take[data-drawn='true']")) >= takes_before + num or error_shown(d),
        message="no take card appeared",
    )
    assert not error_shown(driver), by_id(driver, "error-text").text
    return css(driver, ".take:not(.live)")


def error_shown(driver) -> bool:
    return by_id(driver, "error").get_attribute("hidden") is None


def drag_bars(driver, canvas, first: int, last: int) -> None:
    """Drag across a drawn roll from the middle of bar `first` to the middle of bar `last`."""
    from selenium.webdriver.common.action_chains import ActionChains

    # the x offsets (from the canvas' centre, as Selenium wants them) of the bars' middles
    centre, middles = driver.execute_script(
        """
        const [c, a, b] = arguments, g = c._geom, x = (t) => g.left + (t / g.end) * g.plotW;
        const mid = (k) => (x(g.bars[k - 1]) + x(k < g.bars.length ? g.bars[k] : g.end)) / 2;
        return [c.clientWidth / 2, [mid(a), mid(b)]];
        """,
        canvas,
        first,
        last,
    )
    start, step = int(middles[0] - centre), int(middles[1] - middles[0])
    drag = ActionChains(driver).move_to_element_with_offset(canvas, start, 0).click_and_hold()
    drag.move_by_offset(step // 2, 0).move_by_offset(step - step // 2, 0).release().perform()


def take_score(server, card) -> symusic.Score:
    """The MIDI file of a take card's take."""
    url = f"{server.url}/api/jobs/{card.get_attribute('data-job')}/takes/{card.get_attribute('data-take')}.mid"
    return symusic.Score.from_midi(httpx.get(url, timeout=30).content)


def notes_by_program(score: symusic.Score) -> dict[int, list[tuple]]:
    """Each track's notes by its program (-1: drums): one stream tells tracks apart by program."""
    return {
        -1 if t.is_drum else t.program: sorted((n.time, n.duration, n.pitch, n.velocity) for n in t.notes)
        for t in score.tracks
        if len(t.notes)
    }


def upload(driver, path):
    by_id(driver, "upload").send_keys(str(path))
    wait(driver, lambda d: by_id(d, "song-title").text == path.name, 30, "the uploaded song was not shown")


def test_page_lists_the_models_with_their_defaults(studio, page):
    open_studio(page, studio.url)
    served = models(studio)
    options = [o.get_attribute("value") for o in css(page, "#model option")]
    assert options == [m["id"] for m in served]
    first = served[0]
    info = by_id(page, "model-info").text
    assert first["tokenization"] in info and first["mode"] in info
    assert by_id(page, "set-max_tokens").get_attribute("value") == str(first["settings"]["max_tokens"])
    # the tasks offered are the model's own
    multitrack = next(m for m in served if m["multitrack"])
    choose(page, "model", multitrack["id"])
    offered = [r.get_attribute("value") for r in css(page, "#tasks input[type='radio']")]
    assert offered == [t["task"] for t in multitrack["tasks"]]  # what the API lists: the page asks, not names
    if multitrack["controls"]:  # the tasks that take controls offer the box, naming what the model follows
        assert not by_id(page, "controls-panel").is_displayed()
        by_id(page, "task-accompany").click()
        assert multitrack["controls"][0] in by_id(page, "controls-hint").text


def test_generate_from_nothing_draws_plays_and_downloads(studio, page):
    open_studio(page, studio.url)
    remi = model_id(studio, multitrack=False)
    choose(page, "model", remi)
    by_id(page, "task-generate").click()
    small_settings(page, max_tokens=64, num=2)
    css(page, "#more-settings summary")[0].click()
    set_field(page, "set-min_tokens", 32)  # a tiny model trained for seconds ends many pieces at once
    choose(page, "set-meter", "3/4")  # every bar in 3/4
    cards = generate(page, num=2)
    assert len(cards) == 2
    card = cards[0]
    assert remi in card.text and "from nothing" in card.text and "meter 3/4" in card.text
    roll = card.find_element("css selector", "canvas")
    assert page.execute_script(COLOURED_PIXELS, roll) > 20, "the take's piano roll has no notes drawn"

    # the WAV plays
    audio = card.find_element("css selector", "audio")
    played = page.execute_async_script(
        """
        const [audio, done] = arguments;
        audio.muted = true;
        audio.play()
          .then(() => setTimeout(() => done({duration: audio.duration, time: audio.currentTime,
                                              paused: audio.paused}), 500))
          .catch((e) => done({error: String(e), code: audio.error && audio.error.code}));
        """,
        audio,
    )
    assert "error" not in played, played
    assert played["duration"] > 0 and (played["time"] > 0 or not played["paused"]), played

    # the MIDI link gives the take's notes
    link = card.find_element("css selector", "a.download")
    assert link.get_attribute("download").endswith(".mid")
    midi = httpx.get(link.get_attribute("href"), timeout=30)
    assert midi.status_code == 200
    score = symusic.Score.from_midi(midi.content)
    assert sum(len(t.notes) for t in score.tracks) > 0
    assert {(ts.numerator, ts.denominator) for ts in score.time_signatures} == {(3, 4)}

    # the score view: the take engraved, staves and note heads, in place of the piano roll and back
    toggle = card.find_element("css selector", "button.show-score")
    toggle.click()
    wait(page, lambda d: card.find_elements("css selector", ".take-score svg"), 60, "the score was not shown")
    assert card.find_elements("css selector", ".take-score g.staff")
    assert card.find_elements("css selector", ".take-score g.note")
    assert not roll.is_displayed() and toggle.text == "Piano roll"
    toggle.click()
    assert roll.is_displayed() and not card.find_element("css selector", ".take-score").is_displayed()

    # the MusicXML link gives the take as a score in 3/4
    link = card.find_element("css selector", "a.download-musicxml")
    assert link.get_attribute("download").endswith(".musicxml")
    xml = httpx.get(link.get_attribute("href"), timeout=60)
    assert xml.status_code == 200 and b"<score-partwise" in xml.content and b"<beats>3</beats>" in xml.content

    # a take becomes the next song
    card.find_element("css selector", "button.use-song").click()
    wait(page, lambda d: "take" in by_id(d, "song-title").text, 30, "the take did not become the song")
    assert page.execute_script(COLOURED_PIXELS, by_id(page, "song-roll")) > 20


def test_upload_and_accompany_in_the_time_ordered_stream(studio, page, tmp_path):
    midi = tmp_path / "band.mid"
    make_midi(midi, seed=3, bars=8, drums=False)
    open_studio(page, studio.url)
    choose(page, "model", model_id(studio, multitrack=False))
    upload(page, midi)
    assert page.execute_script(COLOURED_PIXELS, by_id(page, "song-roll")) > 50
    legend = css(page, "#song-legend .legend-item")
    assert len(legend) == 2  # melody and bass
    by_id(page, "task-accompany").click()
    # keep the melody only, and write a viola beside it
    css(page, "#song-legend [data-track='1']")[0].click()
    assert "Keeping 1 of 2" in by_id(page, "keep-summary").text
    choose(page, "add-program", "41")
    by_id(page, "add-button").click()
    assert "Viola" in by_id(page, "add-list").text
    small_settings(page, max_tokens=48, num=1)
    css(page, "#more-settings summary")[0].click()
    set_field(page, "set-sweeps", 1)  # one revision sweep, the first pass kept
    by_id(page, "set-keep_sweeps").click()
    card = generate(page)[0]
    assert "accompany" in card.text and "Viola" in card.text
    job = httpx.get(f"{studio.url}/api/jobs/{card.get_attribute('data-job')}", timeout=30).json()
    assert job["task"] == "accompany" and job["status"] == "done"
    notes = httpx.get(studio.url + job["takes"][0]["notes_url"], timeout=30).json()
    programs = [t["program"] for t in notes["tracks"]]
    assert 0 in programs and 33 not in programs  # the melody kept, the bass dropped
    # the first pass, kept: drawn on the take's roll when chosen, and then the MIDI downloaded
    first, final = css(card, ".take-versions button")
    assert (first.text, final.text) == ("first pass", "final")
    first.click()
    link = css(card, "a.download")[0]
    wait(page, lambda d: "/0_sweep_0.mid" in link.get_attribute("href"), 30, "the first pass was not chosen")
    assert first.get_attribute("aria-pressed") == "true" and final.get_attribute("aria-pressed") == "false"
    assert page.execute_script(COLOURED_PIXELS, css(card, "canvas")[0]) > 50


def test_drag_bars_on_the_roll_and_infill_them(studio, page, tmp_path):
    midi = tmp_path / "tune.mid"
    make_midi(midi, seed=5, bars=8, drums=False)
    open_studio(page, studio.url)
    choose(page, "model", model_id(studio, multitrack=False))
    upload(page, midi)
    drag_bars(page, by_id(page, "song-roll"), 2, 3)
    assert by_id(page, "task-infill").is_selected(), "dragging over the roll should choose the infill task"
    assert (by_id(page, "bar-from").get_attribute("value"), by_id(page, "bar-to").get_attribute("value")) == ("2", "3")
    # rewrite the bass only
    css(page, "#song-legend [data-track='1']")[0].click()
    assert by_id(page, "infill-track").get_attribute("value") == "1"
    small_settings(page, max_tokens=48, num=1)
    card = generate(page)[0]
    assert "bars 2-3" in card.text and "track 1" in card.text
    assert int(card.find_element("css selector", "canvas").get_attribute("data-notes")) > 0  # the take is drawn


def test_harmonise_the_top_voice_in_one_click(studio, page, tmp_path):
    midi = tmp_path / "melody.mid"
    song = make_midi(midi, seed=9, bars=4, drums=False)
    model = next(m for m in models(studio) if not m["multitrack"])
    added = [p for p in model["programs"] if p != song.tracks[0].program]  # the run's other voices
    assert added, model["programs"]
    open_studio(page, studio.url)
    choose(page, "model", model["id"])
    offered = [o.get_attribute("value") for o in css(page, "#add-program option")]
    assert offered[: len(model["programs"])] == [str(p) for p in model["programs"]]  # the run's own voices first
    assert not by_id(page, "harmonise").is_displayed()  # a song first
    upload(page, midi)
    small_settings(page, max_tokens=48, num=1)
    card = generate(page, button=by_id(page, "harmonise"))[0]
    assert "accompany" in card.text
    asked = page.execute_script("const s = window.studio.state; return [[...s.keep], s.add];")
    assert asked == [[0], added]
    take = notes_by_program(take_score(studio, card))
    assert take[0] == notes_by_program(song)[0]  # the top voice, note for note
    assert set(take) - {0} <= set(added) and len(take) > 1  # new voices on the run's programs


def test_harmonise_a_melody_uploaded_as_musicxml(studio, page, tmp_path):
    """A melody from notation software: MusicXML (as aurl writes it), read by music21 on upload."""
    from aurl.data.corpus import read_score
    from aurl.notation import musicxml

    song = make_midi(tmp_path / "two.mid", seed=9, bars=4, drums=False)
    song.tracks = song.tracks[:1]  # the melody alone
    song.dump_midi(str(tmp_path / "melody.mid"))
    xml = musicxml(tmp_path / "melody.mid", tmp_path / "melody.musicxml")
    open_studio(page, studio.url)
    choose(page, "model", model_id(studio, multitrack=False))
    assert ".musicxml" in by_id(page, "upload").get_attribute("accept")  # the file dialog offers scores
    upload(page, xml)
    assert len(css(page, "#song-legend .legend-item")) == 1
    small_settings(page, max_tokens=48, num=1)
    card = generate(page, button=by_id(page, "harmonise"))[0]
    assert "accompany" in card.text
    take = notes_by_program(take_score(studio, card))
    assert take[0] == notes_by_program(read_score(xml))[0]  # the melody on the run's top voice, note for note
    assert len(take) > 1  # voices written beside it


def test_rewrite_bars_of_a_take_keeps_every_other_note(studio, page, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.support.ui import Select

    midi = tmp_path / "melody.mid"
    make_midi(midi, seed=5, bars=6, drums=False)
    open_studio(page, studio.url)
    choose(page, "model", model_id(studio, multitrack=False))
    upload(page, midi)
    small_settings(page, max_tokens=48, num=1)
    card = generate(page, button=by_id(page, "harmonise"))[0]  # a take of several voices
    button = card.find_element("css selector", "button.rewrite")
    button.click()  # nothing chosen yet: the page says which field is missing
    wait(page, error_shown, 10, "no error shown")
    assert by_id(page, "error-text").text.startswith("bars:")
    by_id(page, "error-close").click()

    # bars are chosen on the engraved score too: its measures are the take's bars
    card.find_element("css selector", "button.show-score").click()
    box = card.find_element("css selector", ".take-score")
    wait(page, lambda d: box.find_elements("css selector", "g.measure"), 60, "the score was not shown")
    centre, spots = page.execute_script(
        """
        const mid = (node) => {
          const r = node.getBoundingClientRect();
          return [r.left + r.width / 2, r.top + r.height / 2];
        };
        return [mid(arguments[0]), [...arguments[0].querySelectorAll("g.measure")].slice(0, 2).map(mid)];
        """,
        box,
    )
    (x0, y0), (x1, y1) = [(int(x - centre[0]), int(y - centre[1])) for x, y in spots]
    ActionChains(page).move_to_element_with_offset(box, x0, y0).click_and_hold().move_by_offset(
        x1 - x0, y1 - y0
    ).release().perform()
    assert card.find_element("css selector", ".take-bars").text == "Bars 1-2"
    assert len(box.find_elements("css selector", "rect.bar-pick")) == 2
    card.find_element("css selector", "button.show-score").click()  # back to the roll

    drag_bars(page, card.find_element("css selector", "canvas"), 2, 3)
    assert card.find_element("css selector", ".take-bars").text == "Bars 2-3"
    voice = Select(card.find_element("css selector", ".take-voice"))
    track = int(voice.options[-1].get_attribute("value"))  # a written voice where the take has one
    voice.select_by_index(len(voice.options) - 1)
    new = generate(page, takes_before=1, button=button)[0]
    assert "bars 2-3" in new.text and f"-{card.get_attribute('data-job')}-take0.mid" in new.text

    # every note outside bars 2-3 of the voice, and every note of the other voices, as it was
    before, after = take_score(studio, card), take_score(studio, new)
    start, stop = get_bars_ticks(before)[1:4:2]  # where bar 2 starts and bar 3 ends
    program = -1 if before.tracks[track].is_drum else before.tracks[track].program
    old, rewritten = notes_by_program(before), notes_by_program(after)
    assert [n for n in rewritten.get(program, []) if not start <= n[0] < stop] == [
        n for n in old.pop(program) if not start <= n[0] < stop
    ]
    rewritten.pop(program, None)
    assert rewritten == old


def live_notes(driver) -> int:
    """Notes drawn so far in the roll of the take being written."""
    return int(
        driver.execute_script("const c = document.getElementById('live-roll'); return c ? c.dataset.notes : 0") or 0
    )


def test_cancel_a_long_job(studio, page):
    open_studio(page, studio.url)
    choose(page, "model", model_id(studio, multitrack=False))
    by_id(page, "task-generate").click()
    small_settings(page, max_tokens=8000, num=8)  # the most the API allows, and no early end: minutes of work
    css(page, "#more-settings summary")[0].click()
    set_field(page, "set-min_tokens", 8000)
    by_id(page, "generate").click()
    # notes arrive in the live roll while the job runs
    wait(page, lambda d: live_notes(d) > 0 or error_shown(d), message="no notes were streamed")
    assert not error_shown(page), by_id(page, "error-text").text
    assert "tokens/s" in by_id(page, "status").text
    by_id(page, "cancel").click()
    wait(page, lambda d: "Cancelled" in by_id(d, "status").text, 30, "the job was not cancelled")
    job = httpx.get(f"{studio.url}/api/jobs/{page.execute_script('return document.body.dataset.jobId')}").json()
    assert job["status"] == "cancelled" and not job["takes"]
    assert not css(page, ".take")
    assert by_id(page, "generate").is_enabled()


def test_api_errors_are_shown_on_the_page(studio, page, tmp_path):
    open_studio(page, studio.url)
    not_midi = tmp_path / "notes.mid"
    not_midi.write_text("these are not MIDI bytes")
    by_id(page, "upload").send_keys(str(not_midi))
    wait(page, error_shown, 30, "no error shown")
    assert by_id(page, "error-text").text.strip()
    by_id(page, "error-close").click()
    by_id(page, "task-generate").click()
    set_field(page, "set-top_p", 7)
    by_id(page, "generate").click()
    wait(page, error_shown, 30, "no error shown")
    assert "top_p" in by_id(page, "error-text").text


def test_token_is_sent_and_its_absence_explained(studio_with_token, page):
    server = studio_with_token
    open_studio(page, f"{server.url}/")
    assert error_shown(page)
    assert "token" in by_id(page, "error-text").text
    assert not by_id(page, "generate").is_enabled()

    open_studio(page, f"{server.url}/?token={TOKEN}")
    assert css(page, "#model option"), "the models were not listed with the token"
    small_settings(page, max_tokens=32, num=1)
    card = generate(page)[0]  # the event stream carries the token as a parameter
    audio = card.find_element("css selector", "audio")
    assert f"token={TOKEN}" in audio.get_attribute("src")
    ready = page.execute_async_script(
        """
        const [audio, done] = arguments;
        if (audio.readyState >= 1) {
          done(audio.duration);
        } else {
          audio.addEventListener("loadedmetadata", () => done(audio.duration));
          audio.addEventListener("error", () => done(-1));
          audio.load();
        }
        """,
        audio,
    )
    assert ready > 0
    href = card.find_element("css selector", "a.download").get_attribute("href")
    assert httpx.get(href, timeout=30).status_code == 200
    assert httpx.get(href.split("?")[0], timeout=30).status_code == 401

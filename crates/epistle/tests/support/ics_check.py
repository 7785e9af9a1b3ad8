#!/usr/bin/env python3
"""Parses an iCalendar object with the `icalendar` package (an independent
implementation) and prints what it read as JSON.

Usage: ics_check.py FILE"""
import json
import sys

import icalendar

cal = icalendar.Calendar.from_ical(open(sys.argv[1], "rb").read())
events = []
for ev in cal.walk("VEVENT"):
    start = ev.decoded("DTSTART")
    end = ev.decoded("DTEND")
    events.append({
        "uid": str(ev.get("UID")),
        "sequence": int(ev.get("SEQUENCE", 0)),
        "start": start.isoformat(),
        "end": end.isoformat(),
        "summary": str(ev.get("SUMMARY")),
        "description": str(ev.get("DESCRIPTION", "")),
        "location": str(ev.get("LOCATION", "")),
        "url": str(ev.get("URL", "")),
        "status": str(ev.get("STATUS", "")),
        "organizer": str(ev.get("ORGANIZER")),
        "organizer_cn": str(ev.get("ORGANIZER").params.get("CN", "")),
        "attendees": [str(a) for a in (ev.get("ATTENDEE") if isinstance(ev.get("ATTENDEE"), list) else [ev.get("ATTENDEE")]) if a is not None],
    })
print(json.dumps({"method": str(cal.get("METHOD")), "version": str(cal.get("VERSION")), "events": events}))

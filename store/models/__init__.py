"""All models, importable from one place (`from store.models import Follower`).

One module per domain; each helper module registers its tables on the shared `Base`.
"""

from store.models.activities import Activity, Attendance, Project, Shift, SignUp
from store.models.attendance import Callout, CalloutOptIn, ShiftPattern
from store.models.audit import AuditLog
from store.models.base import Base, UTCDateTime, utcnow
from store.models.bus import BusRoute, BusSubscription, BusVisit
from store.models.console import CoordinatorBindCode, CoordinatorRecoveryCode, ServiceCertificate
from store.models.dispatch import Offer, TimePayment
from store.models.district import Community, Team
from store.models.followers import CoordinatorMessage, Follower
from store.models.needs import MenuDraft, ProjectNeed, Survey, SurveyResponse, UnmetNeed
from store.models.notices import Announcement, NoticeConsent, PausedKind
from store.models.orders import CatalogVersion, Order, OrderEvent, OrderSerial
from store.models.places import Place
from store.models.pushes import DeadLetter, Push, PushReceipt
from store.models.rollups import HourMonthTotal, HourYearTotal
from store.models.timebank import PoolGrant, TimeAccount, TimeBankFamily, TimeBankInvite, TimeEntry, TimeTransaction
from store.models.volunteers import Coordinator, HourRecord, Volunteer, VolunteerSerial, VolunteerStar

__all__ = [
    "Callout",
    "CalloutOptIn",
    "ShiftPattern",
    "MenuDraft",
    "ProjectNeed",
    "Survey",
    "SurveyResponse",
    "UnmetNeed",
    "Announcement",
    "NoticeConsent",
    "PausedKind",
    "DeadLetter",
    "HourMonthTotal",
    "HourYearTotal",
    "Activity",
    "Attendance",
    "Project",
    "Shift",
    "SignUp",
    "Place",
    "AuditLog",
    "ServiceCertificate",
    "CoordinatorBindCode",
    "CoordinatorRecoveryCode",
    "Base",
    "UTCDateTime",
    "utcnow",
    "Community",
    "Offer",
    "TimePayment",
    "Team",
    "Follower",
    "CoordinatorMessage",
    "BusRoute",
    "BusSubscription",
    "BusVisit",
    "Push",
    "PushReceipt",
    "CatalogVersion",
    "Order",
    "OrderEvent",
    "OrderSerial",
    "Coordinator",
    "HourRecord",
    "Volunteer",
    "VolunteerSerial",
    "VolunteerStar",
    "TimeAccount",
    "TimeBankFamily",
    "TimeBankInvite",
    "PoolGrant",
    "TimeEntry",
    "TimeTransaction",
]

"""Static reference vocabulary of the simulated retailer.

Everything here is plain data: European cities with approximate coordinates grouped into
sales regions, distribution-centre sites, carriers, product categories with their price
bands and seasons, and the word lists product names are composed from. Brand and carrier
names are invented so that no real company appears in generated data.
"""

from __future__ import annotations

from typing import NamedTuple


class City(NamedTuple):
    """A city that can host stores: name, ISO country code, coordinates and a size weight."""

    name: str
    country: str
    lat: float
    lon: float
    size: float  # rough metro population in millions; drives store count and traffic


class Site(NamedTuple):
    """A distribution-centre site; `primary` sites exist at every scale."""

    city: str
    region: str
    lat: float
    lon: float
    primary: bool


class Carrier(NamedTuple):
    name: str
    reliability: float  # 0..1, higher means fewer late deliveries
    speed_kph: float  # average door-to-door road speed used for lead times


class Category(NamedTuple):
    """A product category: price band (EUR), season mix and the replenishment case pack."""

    name: str
    price_low: float
    price_high: float
    seasons: dict[str, float]  # season -> probability a product of this category has it
    nouns: tuple[str, ...]
    materials: tuple[str, ...]
    styles: tuple[str, ...]
    case_pack: int


REGIONS: tuple[str, ...] = (
    "iberia",
    "france",
    "benelux",
    "dach",
    "nordics",
    "uk-ie",
    "italy",
    "central-europe",
)

# The first city of each region is its flagship: small worlds always get a store there.
CITIES_BY_REGION: dict[str, tuple[City, ...]] = {
    "iberia": (
        City("Madrid", "ES", 40.4168, -3.7038, 6.7),
        City("Barcelona", "ES", 41.3874, 2.1686, 5.6),
        City("Valencia", "ES", 39.4699, -0.3763, 1.6),
        City("Seville", "ES", 37.3891, -5.9845, 1.5),
        City("Zaragoza", "ES", 41.6488, -0.8891, 0.7),
        City("Malaga", "ES", 36.7213, -4.4214, 1.0),
        City("Bilbao", "ES", 43.2630, -2.9350, 1.0),
        City("Palma", "ES", 39.5696, 2.6502, 0.5),
        City("Alicante", "ES", 38.3452, -0.4810, 0.8),
        City("Lisbon", "PT", 38.7223, -9.1393, 2.9),
        City("Porto", "PT", 41.1579, -8.6291, 1.7),
    ),
    "france": (
        City("Paris", "FR", 48.8566, 2.3522, 11.0),
        City("Lyon", "FR", 45.7640, 4.8357, 2.3),
        City("Marseille", "FR", 43.2965, 5.3698, 1.9),
        City("Toulouse", "FR", 43.6047, 1.4442, 1.4),
        City("Lille", "FR", 50.6292, 3.0573, 1.2),
        City("Bordeaux", "FR", 44.8378, -0.5792, 1.3),
        City("Nice", "FR", 43.7102, 7.2620, 1.0),
        City("Nantes", "FR", 47.2184, -1.5536, 1.0),
        City("Strasbourg", "FR", 48.5734, 7.7521, 0.8),
        City("Montpellier", "FR", 43.6108, 3.8767, 0.8),
        City("Rennes", "FR", 48.1173, -1.6778, 0.7),
    ),
    "benelux": (
        City("Amsterdam", "NL", 52.3676, 4.9041, 2.5),
        City("Rotterdam", "NL", 51.9244, 4.4777, 1.8),
        City("The Hague", "NL", 52.0705, 4.3007, 1.1),
        City("Utrecht", "NL", 52.0907, 5.1214, 0.9),
        City("Eindhoven", "NL", 51.4416, 5.4697, 0.8),
        City("Groningen", "NL", 53.2194, 6.5665, 0.4),
        City("Brussels", "BE", 50.8503, 4.3517, 2.1),
        City("Antwerp", "BE", 51.2194, 4.4025, 1.1),
        City("Ghent", "BE", 51.0543, 3.7174, 0.6),
        City("Liege", "BE", 50.6326, 5.5797, 0.6),
        City("Luxembourg", "LU", 49.6116, 6.1319, 0.3),
    ),
    "dach": (
        City("Berlin", "DE", 52.5200, 13.4050, 4.5),
        City("Hamburg", "DE", 53.5511, 9.9937, 2.5),
        City("Munich", "DE", 48.1351, 11.5820, 2.9),
        City("Cologne", "DE", 50.9375, 6.9603, 2.0),
        City("Frankfurt", "DE", 50.1109, 8.6821, 2.3),
        City("Stuttgart", "DE", 48.7758, 9.1829, 1.9),
        City("Dusseldorf", "DE", 51.2277, 6.7735, 1.5),
        City("Leipzig", "DE", 51.3397, 12.3731, 1.0),
        City("Dresden", "DE", 51.0504, 13.7373, 0.8),
        City("Hanover", "DE", 52.3759, 9.7320, 1.1),
        City("Nuremberg", "DE", 49.4521, 11.0767, 1.3),
        City("Vienna", "AT", 48.2082, 16.3738, 2.9),
        City("Graz", "AT", 47.0707, 15.4395, 0.6),
        City("Salzburg", "AT", 47.8095, 13.0550, 0.4),
        City("Zurich", "CH", 47.3769, 8.5417, 1.4),
        City("Geneva", "CH", 46.2044, 6.1432, 0.6),
        City("Basel", "CH", 47.5596, 7.5886, 0.5),
    ),
    "nordics": (
        City("Stockholm", "SE", 59.3293, 18.0686, 2.4),
        City("Gothenburg", "SE", 57.7089, 11.9746, 1.0),
        City("Malmo", "SE", 55.6050, 13.0038, 0.7),
        City("Uppsala", "SE", 59.8586, 17.6389, 0.2),
        City("Copenhagen", "DK", 55.6761, 12.5683, 2.1),
        City("Aarhus", "DK", 56.1629, 10.2039, 0.4),
        City("Oslo", "NO", 59.9139, 10.7522, 1.6),
        City("Bergen", "NO", 60.3913, 5.3221, 0.4),
        City("Helsinki", "FI", 60.1699, 24.9384, 1.5),
        City("Tampere", "FI", 61.4978, 23.7610, 0.4),
    ),
    "uk-ie": (
        City("London", "GB", 51.5072, -0.1276, 14.0),
        City("Manchester", "GB", 53.4808, -2.2426, 2.8),
        City("Birmingham", "GB", 52.4862, -1.8904, 2.9),
        City("Leeds", "GB", 53.8008, -1.5491, 1.9),
        City("Glasgow", "GB", 55.8642, -4.2518, 1.8),
        City("Liverpool", "GB", 53.4084, -2.9916, 1.4),
        City("Edinburgh", "GB", 55.9533, -3.1883, 0.9),
        City("Bristol", "GB", 51.4545, -2.5879, 1.0),
        City("Newcastle", "GB", 54.9783, -1.6178, 1.1),
        City("Belfast", "GB", 54.5973, -5.9301, 0.7),
        City("Dublin", "IE", 53.3498, -6.2603, 2.0),
        City("Cork", "IE", 51.8985, -8.4756, 0.4),
    ),
    "italy": (
        City("Milan", "IT", 45.4642, 9.1900, 4.3),
        City("Rome", "IT", 41.9028, 12.4964, 4.3),
        City("Naples", "IT", 40.8518, 14.2681, 3.1),
        City("Turin", "IT", 45.0703, 7.6869, 2.2),
        City("Florence", "IT", 43.7696, 11.2558, 1.0),
        City("Bologna", "IT", 44.4949, 11.3426, 1.0),
        City("Genoa", "IT", 44.4056, 8.9463, 0.8),
        City("Palermo", "IT", 38.1157, 13.3615, 1.2),
        City("Bari", "IT", 41.1171, 16.8719, 1.2),
        City("Verona", "IT", 45.4384, 10.9916, 0.9),
        City("Venice", "IT", 45.4408, 12.3155, 0.8),
    ),
    "central-europe": (
        City("Warsaw", "PL", 52.2297, 21.0122, 3.1),
        City("Prague", "CZ", 50.0755, 14.4378, 2.7),
        City("Budapest", "HU", 47.4979, 19.0402, 3.0),
        City("Krakow", "PL", 50.0647, 19.9450, 1.4),
        City("Wroclaw", "PL", 51.1079, 17.0385, 1.2),
        City("Lodz", "PL", 51.7592, 19.4560, 1.0),
        City("Poznan", "PL", 52.4064, 16.9252, 1.0),
        City("Gdansk", "PL", 54.3520, 18.6466, 1.1),
        City("Brno", "CZ", 49.1951, 16.6068, 0.7),
        City("Bratislava", "SK", 48.1486, 17.1077, 0.7),
        City("Ljubljana", "SI", 46.0569, 14.5058, 0.5),
        City("Zagreb", "HR", 45.8150, 15.9819, 1.1),
    ),
}

# Logistics hubs rather than shopping cities: where a retailer actually puts its DCs.
DC_SITES: tuple[Site, ...] = (
    Site("Zaragoza", "iberia", 41.6488, -0.8891, True),
    Site("Orleans", "france", 47.9030, 1.9093, True),
    Site("Venlo", "benelux", 51.3704, 6.1724, True),
    Site("Erfurt", "dach", 50.9848, 11.0299, True),
    Site("Jonkoping", "nordics", 57.7826, 14.1618, True),
    Site("Northampton", "uk-ie", 52.2405, -0.9027, True),
    Site("Piacenza", "italy", 45.0526, 9.6929, True),
    Site("Strykow", "central-europe", 51.9000, 19.6000, True),
    Site("Azambuja", "iberia", 39.0700, -8.8690, False),
    Site("Lyon", "france", 45.7640, 4.8357, False),
    Site("Linz", "dach", 48.3069, 14.2858, False),
    Site("Dublin", "uk-ie", 53.3498, -6.2603, False),
    Site("Helsinki", "nordics", 60.1699, 24.9384, False),
)

CARRIERS: tuple[Carrier, ...] = (
    Carrier("Halcyon Freight", 0.95, 68.0),
    Carrier("Nordvik Linehaul", 0.91, 64.0),
    Carrier("Rutas del Sol Transportes", 0.84, 62.0),
    Carrier("Tricolore Express", 0.89, 66.0),
    Carrier("Danubia Cargo", 0.80, 58.0),
    Carrier("Lowlands Parcel", 0.93, 60.0),
    Carrier("Meridian Haulage", 0.76, 70.0),
    Carrier("Alpine Courier", 0.87, 63.0),
)

BRANDS: tuple[str, ...] = (
    "Atelier Nord",
    "Maison Vela",
    "Costa Linea",
    "Urban Fjord",
    "Lumen & Co",
    "Pietra",
    "Kestrel",
    "Mareva",
    "Oak & Indigo",
    "Studio Brio",
    "Solenne",
    "Harbour Lane",
)

SEASONS: tuple[str, ...] = ("spring", "summer", "autumn", "winter", "all")

CUSTOMER_SEGMENTS: tuple[str, ...] = ("occasional", "regular", "loyal", "premium")

CATEGORIES: tuple[Category, ...] = (
    Category(
        "dresses",
        29.0,
        169.0,
        {"spring": 0.35, "summer": 0.4, "autumn": 0.1, "winter": 0.05, "all": 0.1},
        ("Midi Dress", "Maxi Dress", "Wrap Dress", "Slip Dress", "Shirt Dress", "Mini Dress"),
        ("Linen", "Cotton", "Silk", "Satin", "Jersey", "Viscose", "Broderie", "Crepe"),
        ("Floral", "Tiered", "Belted", "Pleated", "Smocked", "Ruched", "Open-Back"),
        3,
    ),
    Category(
        "tops",
        12.0,
        59.0,
        {"spring": 0.25, "summer": 0.35, "autumn": 0.1, "winter": 0.05, "all": 0.25},
        ("T-Shirt", "Tank Top", "Blouse", "Camisole", "Polo", "Bodysuit"),
        ("Cotton", "Organic Cotton", "Linen", "Jersey", "Silk", "Modal", "Rib-Knit"),
        ("Relaxed", "Fitted", "Cropped", "Boxy", "Striped", "Ruffled", "Sleeveless"),
        4,
    ),
    Category(
        "shirts",
        25.0,
        95.0,
        {"spring": 0.2, "summer": 0.2, "autumn": 0.15, "winter": 0.05, "all": 0.4},
        ("Shirt", "Oxford Shirt", "Overshirt", "Camp-Collar Shirt", "Tunic"),
        ("Linen", "Poplin", "Cotton", "Denim", "Flannel", "Chambray", "Silk"),
        ("Relaxed", "Slim", "Oversized", "Tailored", "Checked", "Button-Down"),
        3,
    ),
    Category(
        "trousers",
        29.0,
        119.0,
        {"spring": 0.15, "summer": 0.15, "autumn": 0.2, "winter": 0.1, "all": 0.4},
        ("Trousers", "Chinos", "Cargo Trousers", "Culottes", "Joggers", "Shorts"),
        ("Linen", "Cotton Twill", "Wool", "Corduroy", "Crepe", "Tencel"),
        ("Wide-Leg", "Straight", "Tapered", "Pleated", "High-Rise", "Relaxed"),
        3,
    ),
    Category(
        "jeans",
        39.0,
        129.0,
        {"spring": 0.05, "summer": 0.05, "autumn": 0.05, "winter": 0.05, "all": 0.8},
        ("Jeans", "Denim Shorts", "Denim Skirt"),
        ("Rigid Denim", "Stretch Denim", "Organic Denim", "Recycled Denim", "Selvedge Denim"),
        ("Skinny", "Straight", "Mom", "Bootcut", "Baggy", "Wide-Leg", "Slim"),
        3,
    ),
    Category(
        "knitwear",
        35.0,
        179.0,
        {"spring": 0.1, "summer": 0.0, "autumn": 0.45, "winter": 0.4, "all": 0.05},
        ("Jumper", "Cardigan", "Roll-Neck", "Knitted Vest", "Hoodie"),
        ("Merino", "Cashmere", "Wool-Blend", "Cotton", "Alpaca", "Mohair"),
        ("Cable-Knit", "Chunky", "Crew-Neck", "V-Neck", "Ribbed", "Fine-Knit"),
        2,
    ),
    Category(
        "outerwear",
        59.0,
        399.0,
        {"spring": 0.2, "summer": 0.0, "autumn": 0.4, "winter": 0.4, "all": 0.0},
        ("Coat", "Parka", "Trench Coat", "Puffer Jacket", "Blazer", "Bomber Jacket"),
        ("Wool", "Leather", "Suede", "Technical", "Recycled Nylon", "Tweed", "Waxed Cotton"),
        ("Double-Breasted", "Oversized", "Belted", "Hooded", "Quilted", "Tailored"),
        2,
    ),
    Category(
        "swimwear",
        19.0,
        79.0,
        {"spring": 0.1, "summer": 0.9, "autumn": 0.0, "winter": 0.0, "all": 0.0},
        ("Swimsuit", "Bikini", "Swim Shorts", "Kaftan"),
        ("Recycled", "Textured", "Crinkle", "Printed", "Ribbed"),
        ("High-Leg", "Halterneck", "Bandeau", "Classic", "Tie-Side"),
        4,
    ),
    Category(
        "shoes",
        39.0,
        229.0,
        {"spring": 0.15, "summer": 0.2, "autumn": 0.15, "winter": 0.15, "all": 0.35},
        ("Trainers", "Loafers", "Ankle Boots", "Sandals", "Ballet Flats", "Mules", "Knee Boots"),
        ("Leather", "Suede", "Canvas", "Patent", "Raffia", "Shearling-Lined"),
        ("Chunky", "Pointed", "Square-Toe", "Platform", "Low-Top", "Strappy"),
        2,
    ),
    Category(
        "accessories",
        9.0,
        89.0,
        {"spring": 0.1, "summer": 0.2, "autumn": 0.1, "winter": 0.2, "all": 0.4},
        ("Scarf", "Belt", "Beanie", "Sunglasses", "Cap", "Gloves", "Hair Clip"),
        ("Wool", "Leather", "Silk", "Cotton", "Acetate", "Cashmere", "Straw"),
        ("Classic", "Oversized", "Woven", "Printed", "Slim", "Fringed"),
        6,
    ),
    Category(
        "bags",
        29.0,
        259.0,
        {"spring": 0.1, "summer": 0.15, "autumn": 0.1, "winter": 0.05, "all": 0.6},
        ("Tote Bag", "Crossbody Bag", "Shoulder Bag", "Backpack", "Clutch", "Bucket Bag"),
        ("Leather", "Canvas", "Suede", "Raffia", "Recycled Nylon", "Quilted"),
        ("Mini", "Structured", "Slouchy", "Woven", "Chain-Strap", "Everyday"),
        3,
    ),
)

# Monthly mean temperature (deg C, Jan..Dec) of each region, rounded climate normals of a
# representative city. The weather model adds a daily cycle and noise on top.
MONTHLY_MEAN_TEMPERATURE_C: dict[str, tuple[float, ...]] = {
    "iberia": (7, 9, 12, 14, 18, 23, 27, 26, 22, 16, 11, 8),
    "france": (5, 6, 9, 12, 15, 18, 20, 20, 17, 13, 8, 5),
    "benelux": (3, 4, 7, 10, 13, 16, 18, 18, 15, 11, 7, 4),
    "dach": (1, 2, 6, 10, 14, 17, 19, 19, 15, 10, 5, 2),
    "nordics": (-2, -2, 1, 6, 11, 15, 18, 17, 12, 7, 3, -1),
    "uk-ie": (5, 5, 7, 9, 12, 15, 17, 17, 14, 11, 7, 5),
    "italy": (6, 8, 11, 14, 18, 23, 26, 26, 21, 16, 11, 7),
    "central-europe": (-1, 0, 4, 9, 14, 18, 20, 20, 15, 9, 4, 0),
}

# How storm-prone each region is (0 = calm, 1 = very); winter adds to it in the north-west.
STORMINESS: dict[str, float] = {
    "iberia": 0.15,
    "france": 0.35,
    "benelux": 0.55,
    "dach": 0.35,
    "nordics": 0.6,
    "uk-ie": 0.7,
    "italy": 0.2,
    "central-europe": 0.35,
}
